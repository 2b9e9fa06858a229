"""What one function instance builds once and reuses across invocations: settings, the ledger, token
providers and dispatchers. Nothing here runs at import time (cold start); `warm_up` is the initializer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from shared.adapters.alicom import TokenProvider, acs_client
from shared.adapters.fc import Credentials, FcInvocation
from shared.adapters.flow import FlowApi
from shared.adapters.ledger import Ledger
from shared.adapters.notify import Notifier, build_notifier
from shared.adapters.queue import AlicomQueue
from shared.domain.models import Envelope
from shared.errors import ConfigError
from shared.logs import install_log_safety, logger, register_secret
from shared.services.drain import Dispatch, Drainer
from shared.services.outbox import DeliveryCounts, Notifications, deliver_now
from shared.services.pipeline import MessageOutcome, apply_message
from shared.settings import Settings, load_settings

if TYPE_CHECKING:
    from shared.adapters.dispatch import FcAsyncDispatcher
    from shared.services.sweep import SweepConfig, Sweeper

_T = TypeVar("_T")
FLOW_API_READ_TIMEOUT_SECONDS = 5.0  # a status query or a top-up slower than this is retried (same out id: safe)
NOTIFY_DEADLINE_MARGIN_SECONDS = 1.0  # delivering right after a commit ends this long before the function timeout


class Runtime:
    def __init__(self, settings_loader: Callable[[], Settings] = load_settings) -> None:
        self._load_settings = settings_loader
        self._lock = threading.Lock()
        self._settings: Settings | None = None
        self._ledger: Ledger | None = None
        self._tokens: dict[str, TokenProvider] = {}
        self._flow_apis: dict[str, FlowApi] = {}
        self._dispatchers: dict[str, FcAsyncDispatcher] = {}
        self._notifier: Notifier | None = None
        self._notifier_built = False

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

    @property
    def has_ledger(self) -> bool:
        return self._ledger is not None

    @property
    def notifier(self) -> Notifier | None:
        """The configured sinks (WEBHOOK_URL, NOTIFY_HOOK), built once; None when neither is set. ConfigError when
        NOTIFY_HOOK cannot be imported."""
        settings = self.settings
        with self._lock:
            if self._notifier_built:
                return self._notifier
        built = build_notifier(  # outside the lock: importing NOTIFY_HOOK runs the customer's code
            webhook_url=settings.webhook_url,
            webhook_secret=settings.webhook_secret,
            webhook_timeout_seconds=settings.webhook_timeout_seconds,
            hook=settings.notify_hook,
            hook_timeout_seconds=settings.notify_hook_timeout_seconds,
            retry_after=timedelta(seconds=settings.notify_retry_seconds),
        )
        with self._lock:
            if not self._notifier_built:
                self._notifier, self._notifier_built = built, True
            return self._notifier

    @property
    def notifications(self) -> Notifications | None:
        """Deliver-now and redelivery over the ledger (the sweep, the CLI); None when no sink is configured."""
        notifier = self.notifier
        return Notifications(self.ledger, notifier) if notifier is not None else None

    def deliver_events(self, events: Sequence[Mapping[str, Any]], invocation: FcInvocation) -> DeliveryCounts | None:
        """Events just committed, delivered within NOTIFY_BUDGET_SECONDS and the invocation's time; never raises."""
        if not events or self.settings.notify_budget_seconds <= 0:  # 0: leave it all to redelivery
            return None
        try:
            notifier = self.notifier
        except ConfigError as error:  # the initializer did not run (it would have failed the instance): after a
            logger.error(str(error))  # commit, raising would only make FC retry a receipt already applied
            return None
        if notifier is None:
            return None
        deadline = min(
            time.monotonic() + self.settings.notify_budget_seconds,
            invocation.deadline - NOTIFY_DEADLINE_MARGIN_SECONDS,
        )
        return deliver_now(self.ledger, notifier, events, deadline)

    def warm_up(self) -> None:
        install_log_safety()
        self.ledger  # noqa: B018 - builds settings and the engine once per instance
        self.notifier  # noqa: B018 - a NOTIFY_HOOK that cannot be imported fails the instance's start

    def tokens(self, credentials: Credentials) -> TokenProvider:
        """One cached token provider per AccessKey (the function role's STS key rotates)."""
        settings = self.settings

        def build() -> TokenProvider:
            return TokenProvider(
                self._acs_client(credentials),
                settings.alicom_api_endpoint,
                settings.alicom_message_type,
                settings.alicom_queue_name,
                refresh_margin_seconds=settings.token_refresh_margin_seconds,
            )

        return self._per_key("_tokens", credentials, build)

    def flow_api(self, credentials: Credentials) -> FlowApi:
        """The flow API (FLOW_API) with these credentials, one per AccessKey; thread-safe."""
        settings = self.settings

        def build() -> FlowApi:
            client = self._acs_client(credentials, read_timeout=FLOW_API_READ_TIMEOUT_SECONDS)
            return FlowApi(client, settings.flow_api_endpoint, settings.flow_api)

        return self._per_key("_flow_apis", credentials, build)

    def _acs_client(self, credentials: Credentials, **timeouts: float) -> Any:
        key = credentials
        return acs_client(
            key.access_key_id, key.access_key_secret, key.security_token, self.settings.alicom_region, **timeouts
        )

    def _per_key(self, cache: str, credentials: Credentials, build: Callable[[], _T]) -> _T:
        """The object built for this AccessKey, built once (outside the lock: building reads the settings); objects
        of keys that rotated away are forgotten."""
        register_secret(credentials.access_key_secret, credentials.security_token)
        key = credentials.access_key_id
        with self._lock:
            found = getattr(self, cache).get(key)
        if found is not None:
            return found
        built = build()
        with self._lock:
            found = getattr(self, cache).get(key)
            if found is None:
                found = built
                setattr(self, cache, {key: built})
        return found

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

            def inline(envelope: Envelope) -> MessageOutcome:
                return apply_message(ledger, envelope)

            return inline
        # Only async mode pays for an FC SDK, and only the one FUNCTION_COMPUTE_API names (fc2, or the FC 3.0 SDK).
        from shared.adapters.dispatch import processor_dispatcher

        dispatcher = self._per_key(
            "_dispatchers",
            credentials,
            lambda: processor_dispatcher(
                settings.fc_api,
                settings.fc_endpoint,
                (credentials.access_key_id, credentials.access_key_secret, credentials.security_token or ""),
                settings.processor_service,
                settings.processor_function,
            ),
        )

        def asynchronous(envelope: Envelope) -> tuple[str, ...]:
            return (dispatcher.dispatch(envelope).outcome,)

        return asynchronous

    def drainer(self, credentials: Credentials) -> Drainer:
        settings = self.settings
        inline = settings.dispatch_mode == "inline"
        return Drainer(
            queue_factory=self.queue_factory(credentials),
            dispatch=None if inline else self.dispatch(credentials),
            apply_batches=inline,  # one ledger transaction per received batch
            ledger=self.ledger,
            max_dequeue_count=settings.max_dequeue_count,
            pollers=settings.drain_pollers,
            long_poll_seconds=settings.drain_long_poll_seconds,
            notifier=self.notifier if settings.dispatch_mode == "inline" else None,  # async: the processor delivers
            notify_budget_seconds=settings.notify_budget_seconds,
        )

    def drain_deadline(self, invocation: FcInvocation) -> float:
        return invocation.deadline - self.settings.drain_deadline_margin_seconds

    def sweeper(self, credentials: Credentials) -> Sweeper:
        """The sweep with these credentials: the flow API's status queries, notifications, and the re-drive of
        DLQ_QUEUE_NAME when it is set."""
        from shared.services.sweep import Sweeper  # the drainer and the processor never pay for the sweep's imports

        settings = self.settings
        redrive = None
        if settings.dlq_queue_name is not None:
            from shared.services.redrive import redrive as redrive_queue
            from shared.services.redrive import redrive_queue as destination_queue

            def redrive(deadline: float) -> dict[str, Any]:
                queue = destination_queue(settings, credentials)  # the role's key, as it is now
                return redrive_queue(
                    self.ledger, queue, deadline, max_dequeue_count=settings.max_dequeue_count
                ).as_dict()

        return Sweeper(
            self.ledger,
            self.flow_api(credentials),
            sweep_config(settings),
            deliverer=self.notifications,
            redrive=redrive,
        )

    def sweep_deadline(self, invocation: FcInvocation) -> float:
        return invocation.deadline - self.settings.sweep_deadline_margin_seconds

    def continue_sweep(self, credentials: Credentials, invocation: FcInvocation) -> bool:
        """With SWEEP_SELF_INVOKE, the sweep that stopped at its deadline invokes itself asynchronously to go on
        from its cursor, through the API FUNCTION_COMPUTE_API names: FC 2.0 addresses it by its service and function
        name, FC 3.0 by its function name alone (the context's, FC_FUNCTION_NAME). False when it did not (not asked
        to, or FC refused: the next scheduled run resumes)."""
        settings = self.settings
        if not settings.sweep_self_invoke:
            return False
        on_fc3 = settings.fc_api == "3"
        if settings.fc_endpoint is None or not (on_fc3 or invocation.service_name):
            needs = "FC_ENDPOINT" if on_fc3 else "FC_ENDPOINT and a service (FC 2.0; FUNCTION_COMPUTE_API=3 for FC 3.0)"
            logger.warning("SWEEP_SELF_INVOKE needs FC; the next scheduled run resumes", extra={"needs": needs})
            return False
        from shared.adapters.dispatch import fc_invoker

        try:
            invoker = fc_invoker(
                settings.fc_api,
                settings.fc_endpoint,
                credentials,
                invocation.function_name,
                service=invocation.service_name,
            )
            request_id = invoker.invoke_async(b'{"job":"sweep","continue":true}')
        except Exception as error:  # FC refused or is unreachable: the lease and cursor are saved either way
            logger.warning("sweep could not invoke itself; the next scheduled run resumes", extra={"error": str(error)})
            return False
        logger.info("sweep continues in a new invocation", extra={"request_id": request_id})
        return True


def sweep_config(settings: Settings) -> SweepConfig:
    from shared.domain.sweep import NotFoundRule
    from shared.services.sweep import SweepConfig

    return SweepConfig(
        grace=timedelta(seconds=settings.sweep_grace_seconds),
        qps=settings.sweep_qps,
        concurrency=settings.sweep_concurrency,
        page_size=settings.sweep_page_size,
        lease=timedelta(seconds=settings.sweep_lease_seconds),
        not_found=NotFoundRule(
            settings.sweep_not_found,
            believe_after=timedelta(seconds=settings.sweep_not_found_after_seconds),
            resubmit_max_age=timedelta(seconds=settings.sweep_resubmit_max_age_seconds),
        ),
        report_dir=Path(settings.report_dir),
        notify_budget_seconds=settings.notify_budget_seconds,
    )


runtime = Runtime()
