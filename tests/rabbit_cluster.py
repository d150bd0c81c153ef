"""Three RabbitMQ nodes on this machine, clustered, for the tests that kill and pause a node.

Each node is Debian's rabbitmq-server started from its own scripts directory with its own
node name, ports, data, logs and configuration under a temporary directory, and a cookie of
its own (a HOME of its own), so the machine's shared broker and its CLI are never touched.
Only epmd is shared: it is a name registry, and our node names are ours.

The nodes run as whoever runs the tests and are started in parallel; the second and third
join the first (`stop_app`, `join_cluster`, `start_app`): with peer discovery, nodes that
start together may each form a cluster of their own, or wait a random delay to avoid it.

Partitions are healed with `autoheal`: when a node that was cut off comes back, the side with
the most client connections (then the most nodes) wins and the others restart and rejoin it. `pause_minority` does not heal a node that
was frozen rather than cut off: it never saw itself in a minority, and after it resumes the
cluster stays partitioned until someone restarts it (seen with SIGSTOP here).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

SCRIPTS_DIRS = (Path("/usr/lib/rabbitmq/bin"),)
CTL_TIMEOUT = 120.0
# How long a stopped Erlang distribution peer is tolerated; low so that a paused node is
# declared down within seconds instead of a minute (quorum queues elect a new leader sooner
# than that anyway, through their own failure detector).
NET_TICKTIME = 10


def scripts_dir() -> Path | None:
    """Where the rabbitmq-server and rabbitmqctl scripts are, without the Debian wrappers in
    /usr/sbin (they switch to the `rabbitmq` user, whose cookie and environment are the
    shared broker's)."""
    for candidate in SCRIPTS_DIRS:
        if (candidate / "rabbitmq-server").exists():
            return candidate
    found = shutil.which("rabbitmq-server")
    return Path(found).parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Node:
    index: int
    base: Path
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"absence-c{self.index}@localhost"

    @property
    def directory(self) -> Path:
        return self.base / f"c{self.index}"

    @property
    def pid_file(self) -> Path:
        return self.directory / "beam.pid"

    def url(self, vhost: str, query: str = "") -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{vhost}" + (
            f"?{query}" if query else "")

    def environment(self, home: Path) -> dict[str, str]:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "rabbitmq.conf"
        config.write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.amqp_port}\n"
            "cluster_partition_handling = autoheal\n"
            f"net_ticktime = {NET_TICKTIME}\n"
        )
        plugins = self.directory / "enabled_plugins"
        plugins.write_text("[].\n")
        env_file = self.directory / "rabbitmq-env.conf"
        env_file.write_text("")
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "LANG": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": str(env_file),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def beam_pid(self) -> int:
        """The Erlang VM's pid (the script that started it is only its parent)."""
        return int(self.pid_file.read_text().strip())


class RabbitCluster:
    def __init__(self, base: Path, size: int = 3) -> None:
        directory = scripts_dir()
        if directory is None:
            raise RuntimeError("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
        self.scripts = directory
        self.base = base
        self.home = base / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)
        self.nodes = [Node(index, base) for index in range(1, size + 1)]
        self.startup_seconds = 0.0

    # --- the CLI ------------------------------------------------------------------------------

    def ctl(self, node: Node, *args: str) -> str:
        """rabbitmqctl against `node`, with the cluster's cookie."""
        result = subprocess.run(
            [str(self.scripts / "rabbitmqctl"), "-n", node.name, *args],
            env=node.environment(self.home), capture_output=True, text=True,
            timeout=CTL_TIMEOUT, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {node.name} failed: "
                               f"{result.stdout}{result.stderr}")
        return result.stdout

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        for node in self.nodes:
            self.launch(node)
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(self.await_startup, self.nodes))
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", seed.name)
            self.ctl(node, "start_app")
        self.startup_seconds = time.monotonic() - began

    def launch(self, node: Node) -> None:
        node.pid_file.unlink(missing_ok=True)
        node.process = subprocess.Popen(
            [str(self.scripts / "rabbitmq-server")], env=node.environment(self.home),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def await_startup(self, node: Node) -> None:
        self.ctl(node, "wait", str(node.pid_file), "--timeout", str(int(CTL_TIMEOUT)))

    def restart(self, node: Node) -> None:
        """Start a killed node again on its own data; it rejoins the cluster by itself."""
        self.launch(node)
        self.await_startup(node)

    def kill(self, node: Node) -> None:
        """kill -9 of the node's Erlang VM: no goodbye to clients or peers."""
        os.kill(node.beam_pid(), signal.SIGKILL)
        if node.process is not None:
            node.process.wait(30)

    def pause(self, node: Node) -> None:
        """Freeze the node's VM: its sockets stay open but nothing answers, as when a network
        partition cuts it off."""
        os.kill(node.beam_pid(), signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        """Let a frozen node run again and wait until the cluster counts it as running."""
        os.kill(node.beam_pid(), signal.SIGCONT)
        self.await_running(len(self.nodes), via=next(n for n in self.nodes if n is not node))

    def await_running(self, count: int, via: Node, timeout: float = CTL_TIMEOUT) -> None:
        """Ask `via` until it sees `count` running nodes (the CLI has no command that waits for
        a node to rejoin after a partition)."""
        deadline = time.monotonic() + timeout
        while True:
            status = json.loads(self.ctl(via, "cluster_status", "--formatter", "json"))
            if len(status["running_nodes"]) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} nodes not running after {timeout} s: {status}")

    def stop(self) -> None:
        """Stop every node, whatever state a failed test left it in."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            try:
                pid = node.beam_pid()
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
            node.process.terminate()
            try:
                node.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(node.process.pid, signal.SIGKILL)

    # --- what tests ask -----------------------------------------------------------------------

    def urls(self, vhost: str, query: str = "") -> str:
        """`AMQP_URL` naming every node, the first one first."""
        return ",".join(node.url(vhost, query) for node in self.nodes)

    def add_vhost(self, vhost: str) -> None:
        seed = self.running()[0]
        self.ctl(seed, "add_vhost", vhost)
        self.ctl(seed, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def queue_placement(self, vhost: str, queue: str) -> tuple[str, list[str]]:
        """The node leading `queue` and the nodes holding a replica of it."""
        output = self.ctl(self.running()[0], "list_queues", "-p", vhost, "name", "leader", "members",
                          "--quiet", "--formatter", "json")
        for row in json.loads(output):
            if row["name"] == queue:
                return str(row["leader"]), sorted(str(m) for m in row["members"])
        raise LookupError(f"no queue {queue} in {vhost}")

    def node_named(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)
