"""`road-seg play BAG`: publish a rosbag2 with rclpy as `ros2 bag play` would, where no ROS install provides it.

So a venv install can replay a drive into the live node (and RViz on another machine on the same ROS domain):
the bag (sqlite3 or MCAP) is read with rosbags through the project's bag reader, and every message goes out
as recorded -- same topic (or `--remap`ped), same type, its recorded CDR bytes unchanged -- on a publisher with
the recorded QoS (reliable unless a recorded publisher offered best effort; transient-local where all did), at
the recorded log times scaled by `--rate`. With `--clock` it publishes /clock (rosgraph_msgs/Clock, best
effort, like `ros2 bag play --clock`) at the playback head's bag time, so nodes run with `use_sim_time:=true`.

Errors that stop it before playing (missing bag, unknown storage, unknown topic, a message type with no
Python package here) are `PlayError`s: one line on stderr and exit code 2. Ctrl-C stops cleanly (exit 0).
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field

from rosbags.interfaces import Connection, QosDurability, QosReliability

from road_seg_core.bag.bagio import BagError, describe_topics, open_reader
from road_seg_core.errors import UserError
from road_seg_ros.node_exit import interrupt_once

CLOCK_TOPIC = "/clock"
DEFAULT_CLOCK_HZ = 40.0  # ros2 bag play --clock's default
NODE_NAME = "road_seg_player"


class PlayError(UserError):
    """The bag cannot be played as asked; the message is one line naming the problem and the value."""


@dataclass
class PlayOptions:
    rate: float = 1.0
    clock_hz: float | None = None  # publish /clock at this rate; None: no /clock
    loop: bool = False
    start_offset_s: float = 0.0  # seconds after the bag's first message
    duration_s: float | None = None  # seconds of the bag to play; None: to the end
    topics: tuple[str, ...] = ()  # only these (bag names); empty: all
    exclude: tuple[str, ...] = ()
    remap: dict[str, str] = field(default_factory=dict)  # bag topic -> published topic
    delay_s: float = 0.0  # before playing (each loop)
    wait_for_subscribers_s: float = 0.0  # wait up to this long for a subscriber on every played topic
    progress: bool = False

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise PlayError(f"--rate must be > 0, got {self.rate:g}")
        if self.clock_hz is not None and not self.clock_hz > 0:
            raise PlayError(f"--clock must be > 0 Hz, got {self.clock_hz:g}")
        if self.start_offset_s < 0:
            raise PlayError(f"--start-offset must be >= 0 s, got {self.start_offset_s:g}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise PlayError(f"--duration must be > 0 s, got {self.duration_s:g}")
        if self.delay_s < 0 or self.wait_for_subscribers_s < 0:
            raise PlayError("--delay and --wait-for-subscribers must be >= 0 s")


@dataclass
class PlayTopic:
    """One published topic: where it goes, its type and QoS, and the bag connections it comes from."""

    name: str
    msgtype: str
    msg_class: type
    reliable: bool
    transient_local: bool
    connections: list[Connection]


def parse_remap(items: list[str]) -> dict[str, str]:
    """['/a:=/b', ...] -> {'/a': '/b'}."""
    out: dict[str, str] = {}
    for item in items:
        old, sep, new = item.partition(":=")
        if not sep or not old or not new:
            raise PlayError(f"--remap expects OLD:=NEW, got {item!r}")
        out[old] = new
    return out


def message_class(msgtype: str, topic: str) -> type:
    """The rclpy message class of 'pkg/msg/Type'; PlayError when its Python package is not installed."""
    package, _, name = msgtype.rpartition("/")
    module_name = package.replace("/", ".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise PlayError(f"cannot publish {topic}: message type {msgtype} is not installed here (no Python module "
                        f"{module_name}.{name}); install its package or leave the topic out with "
                        f"--exclude {topic}") from None


def plan_topics(reader, opts: PlayOptions) -> dict[str, PlayTopic]:
    """Bag topic -> what to publish it as, after --topics/--exclude/--remap; PlayError on unknown names."""
    in_bag = set(reader.topics)
    for option, names in (("--topics", opts.topics), ("--exclude", opts.exclude), ("--remap", opts.remap)):
        unknown = sorted(set(names) - in_bag)
        if unknown:
            raise PlayError(f"{option}: {', '.join(unknown)} not in bag {reader.path}; the bag has: "
                            f"{describe_topics(reader)}")
    chosen = [t for t in sorted(in_bag) if (not opts.topics or t in opts.topics) and t not in opts.exclude]
    if not chosen:
        raise PlayError(f"nothing to play in {reader.path}: every topic is left out")
    plan: dict[str, PlayTopic] = {}
    for topic in chosen:
        conns = [c for c in reader.connections if c.topic == topic]
        types = sorted({c.msgtype for c in conns})
        if len(types) > 1:
            raise PlayError(f"topic {topic} in bag {reader.path} has several types ({', '.join(types)})")
        offers = [q for c in conns for q in (getattr(c.ext, "offered_qos_profiles", None) or [])]
        name = opts.remap.get(topic, topic)
        plan[topic] = PlayTopic(
            name=name, msgtype=types[0], msg_class=message_class(types[0], topic),
            reliable=not any(q.reliability == QosReliability.BEST_EFFORT for q in offers),
            transient_local=bool(offers) and all(q.durability == QosDurability.TRANSIENT_LOCAL for q in offers),
            connections=conns)
    return plan


def play_window(reader, opts: PlayOptions) -> tuple[int, int]:
    """[start, stop) in bag log time for --start-offset/--duration; PlayError if the offset is past the end."""
    start = reader.start_time + round(opts.start_offset_s * 1e9)
    if start > reader.end_time and reader.message_count:
        raise PlayError(f"--start-offset {opts.start_offset_s:g} s is past the end of {reader.path} "
                        f"({(reader.end_time - reader.start_time) / 1e9:.3f} s long)")
    stop = reader.end_time + 1
    if opts.duration_s is not None:
        stop = min(stop, start + round(opts.duration_s * 1e9))
    return start, stop


class BagPlayer:
    """Publishes the planned topics of an open bag from an rclpy node, at recorded timing."""

    def __init__(self, node, reader, opts: PlayOptions) -> None:
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        self.node, self.reader, self.opts = node, reader, opts
        self.plan = plan_topics(reader, opts)
        self.start_ns, self.stop_ns = play_window(reader, opts)
        self.pubs = {}
        for topic, p in self.plan.items():
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                             reliability=ReliabilityPolicy.RELIABLE if p.reliable else ReliabilityPolicy.BEST_EFFORT,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if p.transient_local
                             else DurabilityPolicy.VOLATILE)
            self.pubs[topic] = node.create_publisher(p.msg_class, p.name, qos)
        self.clock_pub = None
        if opts.clock_hz:
            from rosgraph_msgs.msg import Clock

            self._clock_msg = Clock
            self.clock_pub = node.create_publisher(
                Clock, CLOCK_TOPIC, QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                                               reliability=ReliabilityPolicy.BEST_EFFORT))
        self.published = 0
        self.loops = 0
        self._wall0 = 0.0
        self._next_clock = 0.0
        self._next_progress = 0.0

    @property
    def span_s(self) -> float:
        return (self.stop_ns - 1 - self.start_ns) / 1e9 if self.stop_ns > self.start_ns else 0.0

    def bag_time_ns(self, wall: float) -> int:
        """The playback head: bag time reached at monotonic time `wall`."""
        return self.start_ns + round((wall - self._wall0) * self.opts.rate * 1e9)

    def wait_for_subscribers(self) -> list[str]:
        """Wait (up to --wait-for-subscribers) for a subscriber on every played topic; the topics still without."""
        deadline = time.monotonic() + self.opts.wait_for_subscribers_s
        while True:
            missing = [self.plan[t].name for t, pub in self.pubs.items() if pub.get_subscription_count() == 0]
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.05)

    def play(self) -> None:
        """Play the window once, or until interrupted with --loop."""
        while True:
            if self.opts.delay_s:
                time.sleep(self.opts.delay_s)
            self._play_once()
            self.loops += 1
            if not self.opts.loop:
                return

    def _play_once(self) -> None:
        self._wall0 = time.monotonic()
        self._next_clock = self._wall0
        by_id = {c.id: t for t, p in self.plan.items() for c in p.connections}
        conns = [c for p in self.plan.values() for c in p.connections]
        for conn, log_ns, raw in self.reader.messages(connections=conns, start=self.start_ns, stop=self.stop_ns):
            self._wait_until(self._wall0 + (log_ns - self.start_ns) / 1e9 / self.opts.rate)
            self.pubs[by_id[conn.id]].publish(bytes(raw))
            self.published += 1
            self._show_progress(log_ns)

    def _wait_until(self, due: float) -> None:
        while True:
            now = time.monotonic()
            if self.clock_pub is not None and now >= self._next_clock:
                self._publish_clock(self.bag_time_ns(now))
                self._next_clock += 1.0 / self.opts.clock_hz
                continue
            if now >= due:
                return
            wake = min(due, self._next_clock) if self.clock_pub is not None else due
            time.sleep(max(0.0, wake - now))

    def _publish_clock(self, bag_ns: int) -> None:
        msg = self._clock_msg()
        msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), 1_000_000_000)
        self.clock_pub.publish(msg)

    def _show_progress(self, log_ns: int) -> None:
        now = time.monotonic()
        if not self.opts.progress or now < self._next_progress:
            return
        self._next_progress = now + 0.25
        loop = f"  loop {self.loops + 1}" if self.opts.loop else ""
        sys.stderr.write(f"\r[play] {(log_ns - self.start_ns) / 1e9:8.2f} / {self.span_s:.2f} s  "
                         f"{self.published} msgs  x{self.opts.rate:g}{loop}   ")
        sys.stderr.flush()

    def flush(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until reliable subscribers have acknowledged what was published, so nothing is cut off."""
        from rclpy.duration import Duration

        for topic, pub in self.pubs.items():
            if self.plan[topic].reliable:
                pub.wait_for_all_acked(Duration(nanoseconds=round(timeout_s * 1e9)))


# -- CLI ------------------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 directory (sqlite3 or MCAP), or a .db3/.mcap file")
    parser.add_argument("-r", "--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    parser.add_argument("--clock", type=float, nargs="?", const=DEFAULT_CLOCK_HZ, default=None, metavar="HZ",
                        help=f"publish {CLOCK_TOPIC} at HZ (default {DEFAULT_CLOCK_HZ:g}) for use_sim_time nodes")
    parser.add_argument("-l", "--loop", action="store_true", help="play again from the start until Ctrl-C")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S",
                        help="start S seconds after the bag's first message")
    parser.add_argument("--duration", type=float, default=None, metavar="S", help="play S seconds of the bag")
    parser.add_argument("--topics", nargs="+", default=[], metavar="TOPIC", help="play only these topics")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="TOPIC", help="leave these topics out")
    parser.add_argument("--remap", nargs="+", default=[], metavar="OLD:=NEW", help="publish topic OLD as NEW")
    parser.add_argument("-d", "--delay", type=float, default=0.0, metavar="S", help="sleep S seconds before playing")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                        help="before playing, wait up to S seconds until every played topic has a subscriber")
    parser.add_argument("--no-progress", action="store_true", help="no progress line")


def run(args: argparse.Namespace) -> int:
    opts = PlayOptions(rate=args.rate, clock_hz=args.clock, loop=args.loop, start_offset_s=args.start_offset,
                       duration_s=args.duration, topics=tuple(args.topics), exclude=tuple(args.exclude),
                       remap=parse_remap(args.remap), delay_s=args.delay,
                       wait_for_subscribers_s=args.wait_for_subscribers,
                       progress=not args.no_progress and sys.stderr.isatty())
    try:
        reader = open_reader(args.bag)
    except BagError as exc:
        raise PlayError(str(exc)) from None
    with closing(reader):
        plan_topics(reader, opts)  # every check that needs no ROS, before rclpy starts
        play_window(reader, opts)
        return _play(reader, opts, args.bag)


def _play(reader, opts: PlayOptions, bag: str) -> int:
    import rclpy

    previous = signal.getsignal(signal.SIGINT)
    interrupt_once()
    rclpy.init(args=[])
    node = rclpy.create_node(NODE_NAME)
    player = None
    interrupted = ""
    t0 = time.monotonic()
    try:
        player = BagPlayer(node, reader, opts)
        missing = player.wait_for_subscribers() if opts.wait_for_subscribers_s else []
        if missing:
            print(f"road-seg play: no subscriber after {opts.wait_for_subscribers_s:g} s on {', '.join(missing)}; "
                  f"playing anyway", file=sys.stderr)
        player.play()
        player.flush()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM / SIGHUP as road-seg raises them (named in str)
        interrupted = str(exc) or "Ctrl-C"
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        signal.signal(signal.SIGINT, previous)
    if opts.progress:
        sys.stderr.write("\n")
    if player is not None:
        how = f"stopped ({interrupted}) after" if interrupted else "played"
        print(f"{how} {player.published} messages on {len(player.plan)} topics of {bag} in "
              f"{time.monotonic() - t0:.1f} s (x{opts.rate:g}{', /clock' if opts.clock_hz else ''}"
              f"{f', {player.loops} loops' if opts.loop else ''})")
    return 0
