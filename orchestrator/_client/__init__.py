"""The client library the core agent loop imports: :class:`~.sync.Client`
(threads) on its pipelined :mod:`.connection` (with :mod:`.waiting`),
:class:`~.aio.AsyncClient` (asyncio), their event streams (:mod:`.stream`,
:mod:`.aio_stream`) and what they share (:mod:`.common`: finding the daemon,
framing requests, reading replies).

Never imports the daemon; only the ``aio`` modules import asyncio. Nothing is
imported here, so that ``import orchestrator`` stays cheap:
``orchestrator.Client`` loads ``sync`` on first use.
"""
