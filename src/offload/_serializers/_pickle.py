"""``PickleSerializer``: pickle, opt-in, signed with HMAC-SHA256.

A worker never unpickles bytes that its own key did not sign, and a seal
over the whole message keeps a signed payload from being pointed at
another task.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
from typing import Any

from .._errors import ConfigurationError, NotSerializable, PayloadRejected
from .._message import Message
from ._base import DEFAULT_MAX_SIZE, check_limit, check_size

_SIGNATURE_SIZE = hashlib.sha256().digest_size
_SEAL = "offload-seal"
"""The key of a message's seal in its ``meta``."""
_MIN_KEY_SIZE = 16

_SEALED_META = ("offload.after", "offload.feed", "offload.fed", "offload.next")
"""The ``meta`` keys of a workflow step that the seal covers: what it waits for and is
fed with (``offload._workflow_gate``). Other meta (trace context, added by an enqueue
middleware after the seal) is not covered; a message without these seals as before."""


class PickleSerializer:
    """Pickle (protocol 5) signed with HMAC-SHA256: opt-in, for values JSON cannot carry.

    Unpickling runs code that the payload names, so ``decode`` checks the
    signature first and refuses unsigned, truncated or altered payloads.
    Producer and worker share ``key`` (``OFFLOAD_PICKLE_KEY``), 16 bytes or
    more: ``secrets.token_bytes(32)`` makes a good one.
    """

    name = "pickle"

    def __init__(self, key: bytes, max_size: int | None = DEFAULT_MAX_SIZE) -> None:
        if not isinstance(key, bytes) or len(key) < _MIN_KEY_SIZE:
            got = f"{len(key)} bytes" if isinstance(key, bytes) else f"a {type(key).__name__}"
            raise ConfigurationError(
                f"the pickle signing key must be at least {_MIN_KEY_SIZE} bytes, got {got}; "
                "make one with `python -c 'import secrets; print(secrets.token_hex(32))'` "
                "and give the same key (OFFLOAD_PICKLE_KEY) to producer and workers"
            )
        self._key = key
        self.max_size = check_limit(max_size)

    def __repr__(self) -> str:
        return f"PickleSerializer(key=<{len(self._key)} bytes>, max_size={self.max_size!r})"

    def encode(self, value: object, *, path: str = "value") -> bytes:
        """The HMAC-SHA256 signature, then the pickle of ``value``."""
        try:
            body = pickle.dumps(value, protocol=5)
        except Exception as exc:  # pickling runs user code (__reduce__): anything goes
            raise NotSerializable(
                path,
                type(value).__qualname__,
                f"cannot be pickled ({type(exc).__name__}: {exc}); pass an id (a str or int) "
                "and load the object in the task",
            ) from exc
        data = hmac.digest(self._key, body, "sha256") + body
        check_size(data, self.max_size, path, type(value).__qualname__)
        return data

    def seal(self, message: Message) -> None:
        """Sign the whole message, not only its payload: the task it names, its id
        and options. A worker refuses a message whose seal does not match, so
        that nobody without the key can point a signed payload at another task."""
        message.meta = {**(message.meta or {}), _SEAL: self._seal_of(message)}

    def check_seal(self, message: Message) -> None:
        """``PayloadRejected`` unless ``message`` carries this key's seal."""
        seal = (message.meta or {}).get(_SEAL, "")
        if not hmac.compare_digest(seal, self._seal_of(message)):
            raise PayloadRejected(
                "the message's signature does not match its task, id or options: it was "
                "written without the pickle key, or changed in the broker; nothing of it "
                "ran. Producer and worker must share OFFLOAD_PICKLE_KEY"
            )

    def _seal_of(self, message: Message) -> str:
        fields = [
            message.id,
            message.task,
            message.queue,
            message.priority,
            message.key,
            message.timeout,
            message.retries,
            message.max_deliveries,
            message.result_ttl,
        ]
        meta = message.meta or {}
        linked = [[key, meta[key]] for key in _SEALED_META if key in meta]
        if linked:
            fields.append(linked)
        head = json.dumps(fields, separators=(",", ":"), default=repr).encode("utf-8", "replace")
        return hmac.new(self._key, head + b"\n" + (message.payload or b""), "sha256").hexdigest()

    def decode(self, data: bytes) -> Any:
        """The value, if ``data`` carries this key's signature; else ``PayloadRejected``."""
        signature, body = data[:_SIGNATURE_SIZE], data[_SIGNATURE_SIZE:]
        expected = hmac.digest(self._key, body, "sha256")
        if len(signature) < _SIGNATURE_SIZE or not hmac.compare_digest(signature, expected):
            raise PayloadRejected(
                "the pickle payload's signature does not match: it is unsigned, truncated or "
                "tampered with, or was signed with another key; producer and worker must use "
                "the pickle serializer with the same OFFLOAD_PICKLE_KEY"
            )
        try:
            return pickle.loads(body)
        except Exception as exc:  # signed by us, yet e.g. its class is gone from this worker
            raise PayloadRejected(
                f"the signed pickle payload could not be loaded ({type(exc).__name__}: {exc}); "
                "deploy the same code to producer and worker"
            ) from exc
