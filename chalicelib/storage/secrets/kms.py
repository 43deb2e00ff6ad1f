"""The key-encryption key in AWS KMS: data keys from GenerateDataKey, unwrapped with Decrypt.

The key never leaves KMS; the Lambda role may only GenerateDataKey and Decrypt
with it (the stage's key, by its alias: infra/iam_policy.py), and each call carries
the secret's owner as its encryption context, which CloudTrail records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from chalicelib.core.errors import SecretUnreadable, StorageError
from chalicelib.storage.ports import DataKey, KeyWrapper

# Failures that may pass: the request is failed (503) and the next one asks again. Any other
# refusal (altered or moved ciphertext, another key, a disabled key, no permission) is the
# secret's own: its owner is left out and the reason logged, and the rest of the catalog served.
_TRANSIENT = frozenset({"ThrottlingException", "KMSInternalException", "DependencyTimeoutException",
                        "KeyUnavailableException", "RequestLimitExceeded", "ServiceUnavailable"})


class KmsKeyWrapper(KeyWrapper):
    """Data keys under the KMS key `key_id` (a key id, ARN, alias name or alias ARN)."""

    name = "kms"

    def __init__(self, client: Any, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    def generate(self, context: Mapping[str, str]) -> DataKey:
        try:
            reply = self._client.generate_data_key(KeyId=self._key_id, KeySpec="AES_256",
                                                   EncryptionContext=dict(context))
        except ClientError as exc:
            raise StorageError(f"the key service refused a data key ({_code(exc)})") from exc
        except BotoCoreError as exc:
            raise StorageError("the key service is unreachable") from exc
        return DataKey(reply["Plaintext"], reply["CiphertextBlob"])

    def unwrap(self, wrapped: bytes, context: Mapping[str, str]) -> bytes:
        try:
            # Naming the key makes KMS refuse a data key wrapped under any other key the role may use.
            reply = self._client.decrypt(CiphertextBlob=wrapped, KeyId=self._key_id, EncryptionContext=dict(context))
        except ClientError as exc:
            code = _code(exc)
            if code in _TRANSIENT or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                raise StorageError(f"the key service failed to unwrap a data key ({code})") from exc
            if code == "InvalidCiphertextException":
                raise SecretUnreadable("KMS does not unwrap its data key for this owner: it was altered, or "
                                       "copied from another owner (InvalidCiphertextException)") from None
            raise SecretUnreadable(f"KMS refused to unwrap its data key with {self._key_id} ({code})") from None
        except ParamValidationError:
            raise SecretUnreadable("its data key is not a KMS ciphertext") from None
        except BotoCoreError as exc:
            raise StorageError("the key service is unreachable") from exc
        return reply["Plaintext"]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "unknown"))
