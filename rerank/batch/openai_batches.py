"""OpenAI's Batch API as a batch provider: input files uploaded, batches created and polled,
output and error files downloaded, through the ``openai`` SDK.

The endpoint and the key are the online backend's (``--base-url``, ``--api-key-file``,
``$OPENAI_API_KEY``); the SDK retries what fails for a moment (its own retries, up to
``--max-attempts``); what still fails is one :class:`~rerank.errors.BackendError` line, and the
run can be resumed.
"""

from __future__ import annotations

from ..errors import BackendError
from .lines import ENDPOINT
from .provider import BatchStatus

#: OpenAI's limits on one input file: 50,000 requests, 200 MB (kept under both readings of MB).
MAX_REQUESTS = 50_000
MAX_BYTES = 200_000_000
#: Batches take minutes to hours: a look every 30 s costs nothing and misses little.
POLL_INTERVAL_S = 30.0
#: How many of the newest batches are searched for one a killed run created but did not record.
FIND_LIMIT = 1000


class OpenAIBatches:
    """OpenAI's (or a compatible server's) ``/files`` and ``/batches`` endpoints.

    Parameters
    ----------
    base_url : str or None
        The endpoint; None for OpenAI's API.
    api_key_file : str or None
        ``--api-key-file``.
    timeout : float
        Seconds per request.
    max_attempts : int
        Attempts per request (the SDK's retries + 1).
    api_key_env : str or None
        ``--api-key-env``.
    headers : dict or None
        ``--header``: extra headers of every request.
    """

    provider = "openai"
    max_requests: int | None = MAX_REQUESTS
    max_bytes: int | None = MAX_BYTES
    poll_interval = POLL_INTERVAL_S
    capabilities = None  # the endpoint is asked, as online

    def __init__(self, base_url: str | None, api_key_file: str | None, timeout: float, max_attempts: int,
                 api_key_env: str | None = None, headers: dict | None = None):
        self.base_url = base_url
        self.api_key_file = api_key_file
        self.api_key_env = api_key_env
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.max_attempts = max_attempts
        self._client = None

    def _sdk(self):
        if self._client is None:
            import openai

            from ..backends.openai_endpoint import api_key_for

            self._client = openai.AsyncOpenAI(base_url=self.base_url,
                                              api_key=api_key_for(None, self.api_key_file, self.base_url,
                                                                  self.api_key_env),
                                              max_retries=max(self.max_attempts - 1, 0), timeout=self.timeout,
                                              default_headers=self.headers or None)
        return self._client

    async def _call(self, what: str, request):
        """``await request(client)``, its failure one :class:`BackendError` line naming ``what``."""
        from ..backends.openai_errors import describe_error

        client = self._sdk()
        try:
            return await request(client)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one BackendError line
            message = describe_error(exc, self.base_url)
            key = client.api_key
            if key and len(key) >= 4:
                message = message.replace(key, "***")
            raise BackendError(f"batch API: {what}: {message}") from None

    async def upload(self, name: str, content: bytes) -> str:
        """``POST /files`` with ``purpose="batch"``; the file's id."""
        uploaded = await self._call("uploading an input file", lambda client: client.files.create(
            file=(f"{name}.jsonl", content, "application/jsonl"), purpose="batch"))
        return uploaded.id

    async def create(self, input_file: str) -> str:
        """``POST /batches`` of ``input_file`` for ``/v1/chat/completions`` within 24 h; its id."""
        batch = await self._call("creating a batch", lambda client: client.batches.create(
            input_file_id=input_file, endpoint=ENDPOINT, completion_window="24h"))
        return batch.id

    async def find(self, input_file: str) -> str | None:
        """The newest batch of ``input_file`` among the last :data:`FIND_LIMIT`; None when there
        is none, or when the server cannot list batches."""
        async def search(client):
            seen = 0
            async for batch in client.batches.list(limit=100):
                if batch.input_file_id == input_file:
                    return batch.id
                seen += 1
                if seen >= FIND_LIMIT:
                    break
            return None

        try:
            return await self._call("listing batches", search)
        except BackendError:
            return None

    async def status(self, batch_id: str) -> BatchStatus:
        """``GET /batches/{id}``."""
        batch = await self._call(f"asking for batch {batch_id}", lambda client: client.batches.retrieve(batch_id))
        error = None
        if batch.errors is not None and batch.errors.data:
            first = batch.errors.data[0]
            error = ": ".join(str(part) for part in (first.code, first.message) if part)
            if len(batch.errors.data) > 1:
                error += f" (and {len(batch.errors.data) - 1} more)"
        return BatchStatus(batch.status, batch.output_file_id, batch.error_file_id, error)

    async def download(self, file_id: str) -> bytes:
        """``GET /files/{id}/content``."""
        response = await self._call(f"downloading file {file_id}", lambda client: client.files.content(file_id))
        return response.content

    async def aclose(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            await self._client.close()
            self._client = None
