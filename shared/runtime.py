"""What one function instance builds once and reuses across invocations: settings, the ledger, token
providers and dispatchers. Nothing here runs at import time (cold start); `warm_up` is the initializer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from shared.adapters.alicom import TokenProvider, acs_client
from shared.adapters.fc import Credentials, FcInvocation
from shared.adapters.flow import FlowApi
from shared.adapters.ledger import Ledger
from shared.adapters.queue import AlicomQueue
from shared.domain.models import Envelope
from shared.logs import install_log_safety, logger, register_secret
from shared.services.drain import Dispatch, Drainer
from shared.services.pipeline import apply_message
from shared.settings import Settings, load_settings

if TYPE_CHECKING:
    from shared.adapters.dispatch import FcAsyncDispatcher

FLOW_API_READ_TIMEOUT_SECONDS = 5.0  # a status query or a top-up slower than this is retried (same out id: safe)


class Runtime:
    def __init__(self, settings_loader: Callable[[], Settings] = load_settings) -> None:
        self._load_settings = settings_loader
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._ledger: Ledger | None = None
        self._tokens: dict[str, TokenProvider] = {}
        self._flow_apis: dict[str, FlowApi] = {}
        self._dispatchers: dict[str, FcAsyncDispatcher] = {}

    @property
    def settings(self) -> Settings:
        with self._lock:
            if self._settings is None:
                self._settings = self._load_settings()
                logger.setLevel(self._settings.log_level)
            return self._settings

    @property
    def ledger(self) -> Ledger:
        settings = self.settings
        with self._lock:
            if self._ledger is None:
                self._ledger = Ledger(settings.ledger_url)
            return self._ledger

    def warm_up(self) -> None:
        install_log_safety()
        self.ledger  # noqa: B018 - builds settings and the engine once per instance

    def tokens(self, credentials: Credentials) -> TokenProvider:
        """One cached token provider per AccessKey (the function role's STS key rotates)."""
        settings = self.settings
        register_secret(credentials.access_key_secret, credentials.security_token)
        with self._lock:
            provider = self._tokens.get(credentials.access_key_id)
            if provider is None:
                client = acs_client(
                    credentials.access_key_id,
                    credentials.access_key_secret,
                    credentials.security_token,
                    settings.alicom_region,
                )
                provider = TokenProvider(
                    client,
                    settings.alicom_api_endpoint,
                    settings.alicom_message_type,
                    settings.alicom_queue_name,
                    refresh_margin_seconds=settings.token_refresh_margin_seconds,
                )
                self._tokens = {credentials.access_key_id: provider}  # forget keys that rotated away
            return provider

    def flow_api(self, credentials: Credentials) -> FlowApi:
        """The flow API (FLOW_API) with these credentials, one per AccessKey; thread-safe."""
        settings = self.settings
        register_secret(credentials.access_key_secret, credentials.security_token)
        with self._lock:
            api = self._flow_apis.get(credentials.access_key_id)
            if api is None:
                client = acs_client(
                    credentials.access_key_id,
                    credentials.access_key_secret,
                    credentials.security_token,
                    settings.alicom_region,
                    read_timeout=FLOW_API_READ_TIMEOUT_SECONDS,
                )
                api = FlowApi(client, settings.flow_api_endpoint, settings.flow_api)
                self._flow_apis = {credentials.access_key_id: api}  # forget keys that rotated away
            return api

    def queue_factory(self, credentials: Credentials) -> Callable[[], AlicomQueue]:
        settings = self.settings
        tokens = self.tokens(credentials)

        def new_queue() -> AlicomQueue:
            return AlicomQueue(
                settings.alicom_mns_endpoint, settings.alicom_queue_name, settings.alicom_message_type, tokens
            )

        return new_queue

    def dispatch(self, credentials: Credentials) -> Dispatch:
        settings = self.settings
        if settings.dispatch_mode == "inline":
            ledger = self.ledger

            def inline(envelope: Envelope) -> tuple[str, ...]:
                return apply_message(ledger, envelope).outcomes

            return inline
        from shared.adapters.dispatch import FcAsyncDispatcher  # fc2 and requests: only async mode pays their import

        with self._lock:
            dispatcher = self._dispatchers.get(credentials.access_key_id)
            if dispatcher is None:
                dispatcher = FcAsyncDispatcher(
                    settings.fc_endpoint,
                    (credentials.access_key_id, credentials.access_key_secret, credentials.security_token or ""),
                    settings.processor_service,
                    settings.processor_function,
                )
                self._dispatchers = {credentials.access_key_id: dispatcher}

        def asynchronous(envelope: Envelope) -> tuple[str, ...]:
            return (dispatcher.dispatch(envelope).outcome,)

        return asynchronous

    def drainer(self, credentials: Credentials) -> Drainer:
        settings = self.settings
        return Drainer(
            queue_factory=self.queue_factory(credentials),
            dispatch=self.dispatch(credentials),
            ledger=self.ledger,
            max_dequeue_count=settings.max_dequeue_count,
            pollers=settings.drain_pollers,
            long_poll_seconds=settings.drain_long_poll_seconds,
        )

    def drain_deadline(self, invocation: FcInvocation) -> float:
        return invocation.deadline - self.settings.drain_deadline_margin_seconds


runtime = Runtime()
