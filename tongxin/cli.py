"""``tongxin`` — run the platform locally, serve one service, mint tokens, look at topics."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import httpx
import typer

from tongxin.devstack.procs import CrashLoop, Supervised, Supervisor
from tongxin.runtime.auth import Role, mint_token
from tongxin.runtime.settings import REPO_ROOT, ServiceSettings, redact_uri

if TYPE_CHECKING:
    from tongxin.runtime.kafka import Producer

app = typer.Typer(help="Tongxin 同心 — community governance service platform", no_args_is_help=True)
devstack_app = typer.Typer(help="The local broker and database.", no_args_is_help=True)
app.add_typer(devstack_app, name="devstack")
dlq_app = typer.Typer(
    help="Dead-letter topics: list and replay parked records.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
app.add_typer(importlib.import_module("tongxin.accounts.cli").app, name="users")

SERVICES: dict[str, int] = {"intake": 8001, "routing": 8002, "volunteer": 8003, "notify": 8004}


def service_port(name: str, env: dict[str, str] | None = None) -> int:
    """The port of a service: ``TONGXIN_<NAME>_PORT`` or its default."""
    env = dict(os.environ) if env is None else env
    return int(env.get(f"TONGXIN_{name.upper()}_PORT") or SERVICES[name])


@app.command()
def serve(
    name: Annotated[str, typer.Argument(help="intake | routing | volunteer | notify")],
    port: Annotated[int | None, typer.Option(help="default: the service's port")] = None,
) -> None:
    """Run one service (what `tongxin up` and docker-compose start)."""
    import uvicorn

    if name not in SERVICES:
        raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICES)}")
    settings = ServiceSettings()
    port = port or service_port(name)
    # a stable name for this process among the service's replicas (static group membership)
    os.environ.setdefault("TONGXIN_INSTANCE", f"{socket.gethostname()}-{port}")
    module = importlib.import_module(f"services.{name}.app")
    uvicorn.run(
        module.create_app,
        factory=True,
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=25,
    )


@devstack_app.command("fetch-kafka")
def fetch_kafka() -> None:
    """Fetch the Apache Kafka jars from Maven Central once (needs Java and Maven)."""
    from tongxin.devstack.kafka import ensure_jars, java_available

    if not java_available():
        typer.echo("no Java runtime: the local stack will use the tansu broker instead")
        return
    typer.echo(f"Kafka jars: {ensure_jars()}")


class _Prefixer(threading.Thread):
    """Copies a child's output to ours, each line prefixed with the service name; the last
    lines are kept in ``tail`` when given."""

    def __init__(self, name: str, stream: Any, tail: deque[str] | None = None) -> None:
        super().__init__(daemon=True)
        self.prefix = f"{name:<9}| "
        self.stream = stream
        self.tail = tail

    def run(self) -> None:
        for raw in iter(self.stream.readline, b""):
            line = _pretty(raw.decode(errors="replace").rstrip())
            if self.tail is not None:
                self.tail.append(line)
            sys.stdout.write(self.prefix + line + "\n")
            sys.stdout.flush()


def _pretty(line: str) -> str:
    try:
        rec = json.loads(line)
    except ValueError:
        return line
    if not isinstance(rec, dict) or "msg" not in rec:
        return line
    extra = {k: v for k, v in rec.items() if k not in ("ts", "level", "service", "logger", "msg")}
    tail = " " + json.dumps(extra, ensure_ascii=False) if extra else ""
    return f"{rec.get('ts', '')[11:23]} {rec.get('level', ''):<7} {rec['msg']}{tail}"


def start_services(
    env: dict[str, str], names: list[str] | None = None, log_dir: Path | None = None
) -> dict[str, subprocess.Popen[bytes]]:
    """Start services as child processes (`tongxin serve NAME`).

    Their output is streamed to ours with a name prefix, or appended to
    ``log_dir/<name>.log`` when ``log_dir`` is given.
    """
    return {name: start_service(env, name, log_dir) for name in names or list(SERVICES)}


def start_service(
    env: dict[str, str], name: str, log_dir: Path | None = None, tail: deque[str] | None = None
) -> subprocess.Popen[bytes]:
    """Start one service (see :func:`start_services`); its last output lines go to ``tail``."""
    out: Any = subprocess.PIPE
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        out = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "tongxin.cli", "serve", name],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if log_dir is None:
        _Prefixer(name, proc.stdout, tail).start()
    return proc


def service_ready(env: dict[str, str], name: str, timeout: float = 2.0) -> bool:
    """The service answers ``/readyz`` with 200 (its broker and database are reachable)."""
    try:
        url = f"http://127.0.0.1:{service_port(name, env)}/readyz"
        return httpx.get(url, timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def wait_ready(env: dict[str, str], names: list[str], timeout: float = 90.0) -> None:
    """Wait until every service answers ``/readyz`` with 200."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            if service_ready(env, name):
                pending.discard(name)
        time.sleep(0.3)
    if pending:
        raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")


def stop_services(procs: dict[str, subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM every service (they drain and commit), SIGKILL any that hang."""
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs.values():
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _supervised_service(env: dict[str, str], name: str) -> Supervised:
    tail: deque[str] = deque(maxlen=50)
    return Supervised(
        name,
        launch=lambda: start_service(env, name, tail=tail),
        ready=lambda: service_ready(env, name, timeout=1.0),
        tail=lambda n: list(tail)[-n:],
    )


@app.command()
def up(
    data_dir: Annotated[
        Path, typer.Option(help="where the local broker and database keep data")
    ] = (REPO_ROOT / "var"),
    kafka_port: int = 9092,
    mongo_port: int = 27017,
) -> None:
    """Start the local stack and the four services and keep them running: one that exits is
    restarted (backoff 1 s doubling to 30 s); Ctrl-C stops everything cleanly."""
    from tongxin.devstack.stack import LocalStack, StackConfig

    stack = LocalStack(StackConfig.from_env(data_dir, kafka_port=kafka_port, mongo_port=mongo_port))
    typer.echo(f"starting the local stack in {data_dir} …")
    stopping = threading.Event()

    def _on_signal(_signum: int, _frame: Any) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    stack.start(progress=typer.echo)
    env = {**os.environ, **stack.service_env()}
    names = list(SERVICES)
    supervisor = Supervisor(
        [*stack.supervised(), *(_supervised_service(env, n) for n in names)],
        echo=lambda line: typer.echo(f"supervisor| {line}"),
        status_path=data_dir / "supervisor.json",
    )
    failed = False
    try:
        typer.echo(f"broker: {stack.broker_kind} at {stack.bootstrap}")
        typer.echo(f"database: SecantusDB at {redact_uri(stack.mongodb_uri)}")
        supervisor.launch(names)
        announced = False
        while not stopping.is_set():
            supervisor.step()
            if not announced and supervisor.ready(names):
                announced = True
                _announce(env, names)
            stopping.wait(0.2)
    except CrashLoop as loop:
        failed = True
        typer.echo(f"\n{loop}. The end of its log:", err=True)
        for line in loop.tail:
            typer.echo(f"  {loop.name:<9}| {line}", err=True)
    finally:
        typer.echo("stopping services …")
        stop_services(supervisor.procs(names))
        typer.echo("stopping broker and database …")
        stack.stop()
        typer.echo(f"stopped; {supervisor.summary()}.")
    if failed:
        raise typer.Exit(1)


def _announce(env: dict[str, str], names: list[str]) -> None:
    intake = f"http://127.0.0.1:{service_port('intake', env)}"
    typer.echo("\nTongxin is up:")
    account = "tongxin users create NAME --role staff --unit town:yongbei"
    typer.echo(f"  console   {intake}/console/  (an account to sign in with: `{account}`)")
    for name in names:
        url = f"http://127.0.0.1:{service_port(name, env)}"
        typer.echo(f"  {name:<9} {url}  (docs {url}/docs, metrics {url}/metrics)")
    typer.echo("Press Ctrl-C to stop.\n")


@app.command()
def token(
    role: Annotated[Role, typer.Option(help="staff | department | volunteer | admin | platform")],
    unit: Annotated[str | None, typer.Option(help="e.g. dept:civil-affairs")] = None,
    sub: Annotated[str, typer.Option(help="subject (user id)")] = "dev-user",
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 8 * 3600,
) -> None:
    """Mint a development token signed with TONGXIN_JWT_SECRET (HS256 deployments)."""
    settings = ServiceSettings()
    if settings.jwt_algorithm != "HS256":
        typer.echo(
            f"TONGXIN_JWT_ALGORITHM={settings.jwt_algorithm}: tokens come from the identity "
            "provider behind TONGXIN_JWKS_URL; `tongxin token` mints HS256 tokens only.",
            err=True,
        )
        raise typer.Exit(2)
    typer.echo(mint_token(settings.jwt_secret, sub=sub, role=role, unit=unit, ttl_s=ttl))


@app.command()
def topics() -> None:
    """Create the contract topics (idempotent) on TONGXIN_KAFKA_BOOTSTRAP and list them."""
    from tongxin.runtime.kafka import KafkaSecurity, contract_topics, ensure_topics

    settings = ServiceSettings()
    wanted = contract_topics(settings.topic_prefix)
    security = KafkaSecurity.from_settings(settings)
    asyncio.run(ensure_topics(settings.kafka_bootstrap, wanted, security=security))
    for name, partitions in wanted:
        typer.echo(f"{name}\t{partitions} partition(s)")


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str, typer.Argument(help="e.g. tongxin.cases.v1 (or its .dlq)")],
    all_records: Annotated[bool, typer.Option("--all", help="include replayed ones")] = False,
) -> None:
    """Show the records parked on a topic's DLQ (not yet replayed, unless --all)."""
    from tongxin.runtime.dlq import list_parked
    from tongxin.runtime.kafka import KafkaSecurity

    settings = ServiceSettings()
    parked = asyncio.run(
        list_parked(
            settings.kafka_bootstrap,
            settings.topic(topic),
            pending_only=not all_records,
            security=KafkaSecurity.from_settings(settings),
        )
    )
    for p in parked:
        typer.echo(
            f"{p.partition}:{p.offset}\t{(p.key or b'').decode(errors='replace')}\t{p.ce_type}"
            f"\t{p.consumer}\tattempts={p.attempts}\t{p.error}"
        )
    typer.echo(f"{len(parked)} record(s)")


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str, typer.Argument(help="e.g. tongxin.cases.v1 (or its .dlq)")],
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="replay records older than the processed-event marks are kept "
            "(TONGXIN_PROCESSED_KEEP_S): consumers that handled them before do so again",
        ),
    ] = False,
) -> None:
    """Put every parked, not yet replayed record back on its topic (once the cause is fixed).

    Refuses, replaying nothing, when a record is older than the processed-event marks are
    kept (docs/operations.md, "Retention"), unless --force."""
    from datetime import timedelta

    from tongxin.runtime.dlq import TooOld, replay
    from tongxin.runtime.kafka import KafkaSecurity, make_producer

    settings = ServiceSettings()
    security = KafkaSecurity.from_settings(settings)

    async def run() -> int:
        producer = make_producer(
            settings.kafka_bootstrap, idempotence=settings.kafka_idempotence, security=security
        )
        await producer.start()
        typer.echo(f"reading the parked records of {settings.topic(topic)} …")
        progress = _ReplayProgress(producer)
        try:
            done = await replay(
                settings.kafka_bootstrap,
                settings.topic(topic),
                cast("Producer", progress),  # sends through, counting
                security=security,
                max_age=None if force else timedelta(seconds=settings.processed_keep_s),
            )
        except TooOld as exc:
            for p in exc.old[:20]:
                typer.echo(f"too old: {p.partition}:{p.offset} {p.ce_type} at {p.time}", err=True)
            typer.echo(
                f"REFUSED: {exc}. Nothing was replayed. Handle them by hand, or replay them "
                "with --force if handling them twice is harmless.",
                err=True,
            )
            raise typer.Exit(1) from None
        finally:
            await producer.stop()
        for p in done:
            typer.echo(f"replayed {p.partition}:{p.offset} {p.ce_type} ({p.error[:80]})")
        return len(done)

    typer.echo(f"{asyncio.run(run())} record(s) replayed")


class _ReplayProgress:
    """A producer's ``send_and_wait`` that says every ``every`` records how many were sent."""

    def __init__(self, producer: Producer, every: int = 100) -> None:
        self.producer = producer
        self.every = every
        self.sent = 0

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.producer.send_and_wait(*args, **kwargs)
        self.sent += 1
        if self.sent % self.every == 0:
            typer.echo(f"  {self.sent} record(s) put back …")
        return result


@app.command()
def asyncapi(
    write: Annotated[
        Path | None, typer.Option(help="write asyncapi.json and schemas/ into this folder")
    ] = None,
) -> None:
    """Print the AsyncAPI 3.0 document of every topic and event (or write the contract docs)."""
    from tongxin.contracts.asyncapi import asyncapi_document, dumps, write_contracts

    if write is None:
        typer.echo(dumps(asyncapi_document()), nl=False)
        return
    for path in write_contracts(write):
        typer.echo(f"wrote {path}")


DEMO_REQUESTS: list[dict[str, Any]] = [
    {
        "category": "sanitation",
        "title": "楼道垃圾堆放",
        "description": "3单元楼道堆放垃圾多日无人清理，气味很大。",
        "community": "community:liyuan",
        "compound": "compound:liyuan-jiayuan",
        "submitter": {"name": "张秀英", "phone": "13812341234"},
    },
    {
        "category": "elderly_care",
        "title": "独居老人需要助餐",
        "description": "6栋独居老人行动不便，希望有志愿者帮忙送餐。",
        "community": "community:liyuan",
        "compound": "compound:jinyuan",
        "submitter": {"name": "李建华", "phone": "13987654321", "party_member": True},
    },
    {
        "category": "safety_hazard",
        "urgency": "emergency",
        "title": "燃气管道泄漏",
        "description": "小区东门燃气管道有明显气味，疑似泄漏。",
        "community": "community:chengdong",
        "compound": "compound:dongsheng",
        "submitter": {"name": "王强", "phone": "13700001111"},
    },
    {
        "category": "legal_aid",
        "vulnerable": True,
        "title": "工资被拖欠需要法律帮助",
        "description": "低保户家庭成员务工工资被拖欠三个月，需要法律援助。",
        "community": "community:chengdong",
        "compound": "compound:lanting",
        "submitter": {"name": "赵梅", "phone": "13655556666"},
    },
]


@app.command()
def demo(
    intake_url: str = "http://127.0.0.1:8001",
    routing_url: str = "http://127.0.0.1:8002",
    volunteer_url: str = "http://127.0.0.1:8003",
    notify_url: str = "http://127.0.0.1:8004",
    wait: float = 10.0,
) -> None:
    """Submit sample requests to a running platform and print each one's journey."""
    settings = ServiceSettings()
    staff = mint_token(settings.jwt_secret, sub="demo", role=Role.STAFF)
    auth = {"Authorization": f"Bearer {staff}"}
    total, routed = len(DEMO_REQUESTS), 0
    typer.echo(f"submitting {total} sample requests to {intake_url}, one at a time …")
    with httpx.Client(timeout=10) as http:
        for i, body in enumerate(DEMO_REQUESTS, 1):
            # submitted as a resident would, anonymously: the anonymous limit applies (a few
            # demos in a minute meet it), so wait as long as intake asks, and say so
            r = http.post(f"{intake_url}/v1/requests", json=body)
            while r.status_code == 429:
                pause = min(float(r.headers.get("Retry-After") or 5), 60.0)
                typer.echo(f"  anonymous submission limit reached; waiting {pause:g} s as asked …")
                time.sleep(pause)
                r = http.post(f"{intake_url}/v1/requests", json=body)
            if r.status_code != 201:
                typer.echo(f"submit failed: {r.status_code} {r.text}", err=True)
                raise typer.Exit(1)
            rid = r.json()["id"]
            typer.echo(f"\n■ [{i}/{total}] {rid}  {body['title']}  ({body['category']})")
            typer.echo(
                f"  submitted; following it through routing, volunteer, notify (≤ {wait:g} s) …"
            )
            deadline = time.monotonic() + wait
            case: dict[str, Any] | None = None
            tasks: list[dict[str, Any]] = []
            notes: list[dict[str, Any]] = []
            while time.monotonic() < deadline:
                cases = http.get(
                    f"{routing_url}/v1/cases", params={"request_id": rid}, headers=auth
                )
                case = (cases.json() or [None])[0] if cases.status_code == 200 else None
                if case:
                    tasks = http.get(
                        f"{volunteer_url}/v1/tasks", params={"request_id": rid}, headers=auth
                    ).json()
                    notes = http.get(
                        f"{notify_url}/v1/notifications", params={"request_id": rid}, headers=auth
                    ).json()
                    if not case.get("needs_volunteers") or (tasks and len(notes) >= 2):
                        break
                time.sleep(0.3)
            if not case:
                typer.echo("  routing has not opened a case yet")
                continue
            routed += 1
            cls = case["classification"]
            typer.echo(f"  routed   tier={case['tier']}  rule={cls['rule']}  units={case['units']}")
            typer.echo(f"           {cls['reason']}")
            for t in tasks:
                who = t.get("volunteer_id") or "-"
                typer.echo(
                    f"  task     {t['id']} {t['status']} volunteer={who} {t.get('scores', '')}"
                )
            for n in notes:
                typer.echo(f"  notified {n['recipient']} via {n['channel']}: {n['status']}")
    typer.echo(f"\n{total} submitted, {routed} routed within {wait:g} s each.")


def main() -> None:
    """Entry point of the ``tongxin`` command."""
    app()


if __name__ == "__main__":
    main()
