"""Raw inbound e-mail in the payload bucket: SES writes it (S3 action), Hilo reads it; SendGrid's Hilo writes it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.errors import PermanentError, RetryableError

#: SES accepts mail up to 40 MB with an S3 action; anything larger in the bucket is not a mail SES stored.
MAX_RAW_BYTES = 40 * 1024 * 1024
_MISSING = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})


def s3_ref(bucket: str, key: str) -> str:
    """``s3://bucket/key``: the form of every ``raw_ref``."""
    return f"s3://{bucket}/{key}"


class RawEmailStore:
    """Reads and writes raw mail; ``ClientError`` becomes PermanentError (gone) or RetryableError (anything else)."""

    def __init__(self, bucket: str | None, s3: Any | None = None) -> None:
        self.bucket = bucket
        self._s3 = s3

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> RawEmailStore:
        """The payload bucket named by ``PAYLOAD_BUCKET_NAME`` (template.yaml sets it)."""
        env = os.environ if environ is None else environ
        return cls(env.get("PAYLOAD_BUCKET_NAME") or None)

    def _client(self) -> Any:
        self._s3 = self._s3 or aws.client("s3")
        return self._s3

    def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes.

        Raises
        ------
        PermanentError
            The object does not exist (expired, deleted) or is larger than any mail SES stores.
        RetryableError
            S3 failed otherwise (throttling, a network error): the record should be retried.
        """
        try:
            response = self._client().get_object(Bucket=bucket, Key=key)
            size = int(response.get("ContentLength") or 0)
            if size > MAX_RAW_BYTES:
                response["Body"].close()
                raise PermanentError(f"The stored mail is {size} bytes, more than SES stores ({MAX_RAW_BYTES}).")
            data: bytes = response["Body"].read()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _MISSING:
                raise PermanentError("The stored mail does not exist (expired or deleted).") from error
            raise RetryableError("Could not read the stored mail.") from error
        except BotoCoreError as error:
            raise RetryableError("Could not read the stored mail.") from error
        return data

    def put(self, key: str, data: bytes, content_type: str) -> str:
        """Store ``data`` under ``key`` in the payload bucket (same key, same bytes: a retry overwrites); its ref.

        Raises
        ------
        RetryableError
            No bucket is configured, or S3 failed: the caller's provider should retry.
        """
        if not self.bucket:
            raise RetryableError("No payload bucket is configured for raw mail (PAYLOAD_BUCKET_NAME).")
        try:
            self._client().put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as error:
            raise RetryableError("Could not store the raw mail.") from error
        return s3_ref(self.bucket, key)
