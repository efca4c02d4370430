"""Starting the RenderJob state machine, idempotently: the execution name is the job id."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avatar_pipeline.state import RenderState

if TYPE_CHECKING:
    from mypy_boto3_stepfunctions import SFNClient


class ExecutionStarter:
    def __init__(self, client: SFNClient, state_machine_arn: str) -> None:
        self._sfn = client
        self._state_machine_arn = state_machine_arn

    def start(self, job_id: str, state: RenderState) -> str:
        """Start (or find) the job's execution and return its ARN.

        A second StartExecution with the same name and input is a no-op on AWS; with a different
        input it raises ExecutionAlreadyExists, which also means the job is already running.
        """
        try:
            response = self._sfn.start_execution(
                stateMachineArn=self._state_machine_arn, name=job_id, input=state.model_dump_json()
            )
        except self._sfn.exceptions.ExecutionAlreadyExists:
            return self.execution_arn(job_id)
        return str(response["executionArn"])

    def execution_arn(self, job_id: str) -> str:
        prefix, _, name = self._state_machine_arn.rpartition(":stateMachine:")
        return f"{prefix}:execution:{name}:{job_id}"
