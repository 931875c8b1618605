"""The client library the core agent loop imports: :class:`~.sync.Client`
(threads), :class:`~.aio.AsyncClient` (asyncio), the connection they share
(``connection``) and the protocol helpers (``common``).

Never imports the daemon. Nothing is imported here, so that ``import
orchestrator`` stays cheap: ``orchestrator.Client`` loads ``sync`` on first use.
"""
