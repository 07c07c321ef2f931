"""The declared topology: one typed declaration per service of what it consumes, produces and dead-letters,
and how it scales.

Each service package declares `TOPOLOGY = ServiceTopology(...)` in its own `topology.py` and names it in its
`pyproject.toml` under the entry-point group `arrears.topology`, so adding a service touches no file outside
its package to get its topics, dead-letter topics, AsyncAPI channels, Strimzi topics and users (ACLs), KEDA
triggers and the topology page of the docs. Everything that needs the map reads it here:

- the service host builds the service's consumers from `consumes` and refuses to start a consumer that reads
  a topic the service did not declare;
- a transaction refuses to write an event to a topic its service does not declare in `produces` (its own
  dead-letter topics are always allowed);
- `arrears up` / the test stack create `all_topics()`; the console's DLQ pages read `dlq_topics()`;
- `deploy/gen_topics.py` writes the Kubernetes manifests and `docs/topology.md`, and a test fails when a
  committed copy is stale; another test starts the platform and compares each running service with this map.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from . import topics
from .topics import EVENT_TOPICS, dlq_topic

ENTRY_POINT_GROUP = "arrears.topology"
_NAME = re.compile(r"^[a-z][a-z0-9-]{1,40}$")


class TopologyError(ValueError):
    """A declaration that contradicts itself or the event catalogue, or code that contradicts a declaration."""


@dataclass(frozen=True, slots=True)
class LagScaling:
    """Autoscale on consumer lag (KEDA's Kafka scaler, one trigger per consumed topic)."""

    min_replicas: int
    max_replicas: int
    lag_per_replica: int
    why: str = ""

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise TopologyError(f"replicas {self.min_replicas}..{self.max_replicas} is not a range")
        if self.lag_per_replica < 1:
            raise TopologyError("lag_per_replica must be at least 1")


@dataclass(frozen=True, slots=True)
class ServiceTopology:
    """What one service (= one consumer group) reads and writes on the broker."""

    name: str
    summary: str
    consumes: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    # the console browses every dead-letter topic and replays records to their source topic
    replays_dead_letters: bool = False
    scaling: LagScaling | None = None
    order: int = 100  # position in listings and generated files (pipeline order)
    package: str = field(default="", compare=False)  # Python package, filled in from the entry point

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise TopologyError(f"service name {self.name!r} is not a DNS label")
        for kind, names in (("consumes", self.consumes), ("produces", self.produces)):
            unknown = [t for t in names if t not in EVENT_TOPICS]
            if unknown:
                raise TopologyError(
                    f"{self.name} {kind} unknown topics {unknown}; known: {list(EVENT_TOPICS)}"
                )
            if len(set(names)) != len(names):
                raise TopologyError(f"{self.name} {kind} lists a topic twice")
        if self.scaling is not None and not self.consumes:
            raise TopologyError(f"{self.name} scales on consumer lag but consumes nothing")

    @property
    def group(self) -> str:
        return self.name

    @property
    def dead_letter_topics(self) -> tuple[str, ...]:
        """One per consumed topic: where this group parks a record it cannot process."""
        return tuple(dlq_topic(t, self.group) for t in self.consumes)

    @property
    def writes(self) -> tuple[str, ...]:
        """Every topic the service may write: its events, its dead letters, and (console) replays."""
        replays = EVENT_TOPICS if self.replays_dead_letters else ()
        return tuple(dict.fromkeys((*self.produces, *self.dead_letter_topics, *replays)))

    def may_write(self, topic: str) -> bool:
        """`produces`, or the dead-letter topic of a consumed topic for any group of this service (a test
        or a second deployment may run the service under another consumer group name)."""
        if topic in self.produces or (self.replays_dead_letters and topic in EVENT_TOPICS):
            return True
        source, _, rest = topic.partition(".")
        return source in self.consumes and rest.endswith(".dlq") and rest.count(".") == 1


def dispatcher_topology(name: str, summary: str, *, order: int, max_replicas: int = 4) -> ServiceTopology:
    """Consumes notices (its channel's), replies (opt-outs, holds), outcomes (a bounce reported later marks an
    address invalid) and account changes (an account paid, closed or removed at its source stops what is
    queued for it); produces outcomes. Scales on lag up to `max_replicas`: every replica shares one provider
    rate limit, so more pods do not send faster."""
    return ServiceTopology(
        name=name,
        summary=summary,
        consumes=(topics.NOTICE_DUE, topics.REPLY_RECEIVED, topics.MESSAGE_SENT, topics.ACCOUNT_CHANGED),
        produces=(topics.MESSAGE_SENT,),
        scaling=LagScaling(
            min_replicas=1,
            max_replicas=max_replicas,
            lag_per_replica=200,
            why="every replica shares one provider rate limit: more pods do not send faster",
        ),
        order=order,
    )


@functools.cache
def declared() -> Mapping[str, ServiceTopology]:
    """Every installed service's declaration, in pipeline order."""
    found: dict[str, ServiceTopology] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        t = ep.load()
        if not isinstance(t, ServiceTopology):
            raise TopologyError(f"entry point {ep.value} is a {type(t).__name__}, not a ServiceTopology")
        if t.name != ep.name:
            raise TopologyError(f"entry point {ep.name!r} declares service {t.name!r}")
        object.__setattr__(t, "package", ep.module.split(".")[0])
        found[t.name] = t
    if not found:
        raise TopologyError(f"no service declares a topology (entry-point group {ENTRY_POINT_GROUP!r})")
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def service(name: str) -> ServiceTopology:
    try:
        return declared()[name]
    except KeyError:
        raise TopologyError(
            f"no service {name!r} declares a topology; declared: {list(declared())}"
        ) from None


def find(name: str) -> ServiceTopology | None:
    return declared().get(name)


def services() -> tuple[str, ...]:
    return tuple(declared())


def consumers_of(topic: str) -> list[str]:
    return [s.name for s in declared().values() if topic in s.consumes]


def producers_of(topic: str) -> list[str]:
    return [s.name for s in declared().values() if topic in s.produces]


def dlq_topics() -> list[str]:
    return [d for s in declared().values() for d in s.dead_letter_topics]


def all_topics() -> list[str]:
    return [*EVENT_TOPICS, *dlq_topics()]


def problems() -> list[str]:
    """Contradictions across declarations (a topic nobody writes but someone reads, and the like)."""
    out = []
    for topic in EVENT_TOPICS:
        if not producers_of(topic):
            out.append(f"no service produces {topic}")
        if not consumers_of(topic):
            out.append(f"no service consumes {topic}")
    return out


def check_write(service_name: str, topic: str) -> None:
    """Raise when a declared service writes to a topic it did not declare (unknown sources — a test's or a
    benchmark's own transactions — are not checked)."""
    t = declared().get(service_name)
    if t is not None and not t.may_write(topic):
        raise TopologyError(
            f"{service_name} wrote to {topic!r}, which its topology does not declare "
            f"(produces {list(t.produces)}); declare it in {t.package}/topology.py"
        )
