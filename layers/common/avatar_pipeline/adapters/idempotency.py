"""The idempotency store (IdempotencyTable), through Powertools idempotency.

Finalize copies a video that may be gigabytes. Step Functions can run it again after it already
succeeded (a Lambda service error reported after the work was done, a retry racing a slow
success): then the recorded outcome is returned instead of copying everything again. A failed run
leaves no record, so a retry does the work; a run in progress makes a concurrent duplicate raise
IdempotencyAlreadyInProgressError, which the ASL retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer

from avatar_pipeline.state import JobOutcome, RenderState

# A job's result can be asked for again for as long as Step Functions might retry a step.
RECORD_LIFETIME_SECONDS = 24 * 3600


class OnceOnly:
    def __init__(self, table_name: str) -> None:
        self._store = DynamoDBPersistenceLayer(table_name=table_name)

    def finalize(
        self, state: RenderState, work: Callable[[RenderState], JobOutcome], lambda_context: Any | None
    ) -> JobOutcome:
        """Run `work(state)` at most once per (job id, request id); later calls get its outcome."""
        config = IdempotencyConfig(
            event_key_jmespath="job.[job_id, request_id]",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=RECORD_LIFETIME_SECONDS,
        )
        if lambda_context is not None:
            # An invocation that dies mid-way leaves an in-progress record that expires with it.
            config.register_lambda_context(lambda_context)

        def finalize_state(state: RenderState) -> JobOutcome:
            return work(state)

        once = idempotent_function(
            data_keyword_argument="state",
            persistence_store=self._store,
            config=config,
            output_serializer=PydanticSerializer(JobOutcome),
            key_prefix="finalize",
        )(finalize_state)
        outcome: JobOutcome = once(state=state)
        return outcome
