"""The Segmind API key, from Secrets Manager through Powertools parameters (cached, never logged)."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters


class ApiKeySource:
    def __init__(self, secret_arn: str, max_age_seconds: int) -> None:
        self._secret_arn = secret_arn
        self._max_age = max_age_seconds

    def __call__(self) -> str:
        value: str | bytes = parameters.get_secret(self._secret_arn, max_age=self._max_age)
        key = value.decode() if isinstance(value, bytes) else value
        return key.strip()

    def __repr__(self) -> str:
        # Keeps the key out of any repr that reaches a log line.
        return f"ApiKeySource(secret_arn={self._secret_arn!r})"
