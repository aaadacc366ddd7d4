"""Several processes (hosts) sharing one sweep: `trainscape run --distributed`.

`initialize` calls `jax.distributed.initialize`, which finds the cluster itself under SLURM,
on a TPU pod, under Open MPI or Kubernetes, or takes the coordinator address, the process count
and this process's id explicitly. The sweep then works like this (see `api.run`):

1. Process 0 checks the output folder (the same refusals as a one-process sweep), chooses the
   chunk size, writes the manifest, and publishes its verdict through the coordinator's
   key-value store; every other process waits for it and stops with the same one-line error if
   process 0 refused.
2. Each process trains the chunks whose number is its id modulo the process count, on its own
   local devices (no cross-host communication in the computation), and writes them as part
   files with its own lock and journal (`.lock-pN`, `chunks/done-pN.jsonl`), so processes never
   write the same file.
3. All wait at a barrier; process 0 streams every chunk into the final files and marks the
   folder finished; a second barrier lets the others return only once the folder reads as one
   result (`ts.load`).

Nothing here is needed for one process: `process()` is then (0, 1) and the sweep is unchanged.
The folder must be on a file system every process sees (NFS, Lustre, ...).
"""

from __future__ import annotations

import json

import jax

from ..errors import InputError

# A sweep can take long, and the coordinator notices dead processes by itself (heartbeats),
# so barriers wait as long as the runtime allows (its timeout is a signed 32-bit milliseconds).
BARRIER_MS = 2**31 - 1
VERDICT_MS = 2**31 - 1


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> tuple[int, int]:
    """Join the cluster; returns (this process's id, number of processes). Must run before
    anything touches a JAX backend (the CLI does it first thing)."""
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if any(given) and not all(given):
        raise InputError("--distributed: give all of --coordinator HOST:PORT, --num-processes N "
                         "and --process-id I, or none of them to detect the cluster (SLURM, "
                         "TPU pod, Open MPI, Kubernetes)")
    if num_processes is not None and not 0 <= process_id < num_processes:
        raise InputError(f"--process-id: got {process_id}; must be in 0..{num_processes - 1} "
                         f"for --num-processes {num_processes}")
    if coordinator is not None:
        _check_address(coordinator)
    try:
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
    except (ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise InputError(f"--distributed: could not join the cluster ({first}); outside SLURM/"
                         "TPU/MPI give --coordinator HOST:PORT --num-processes N "
                         "--process-id I") from None
    return process()


def _check_address(address: str) -> None:
    """HOST:PORT, checked here: jax.distributed fails on a malformed one with an IndexError
    from deep inside, or waits for a coordinator that cannot exist."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # [IPv6]:PORT
        host = host[1:-1]
    ok = bool(sep and host.strip()) and port.isascii() and port.isdigit() and \
        1 <= int(port) <= 65535
    if not ok:
        raise InputError(f"--coordinator: got {address!r}; expected HOST:PORT with a port in "
                         "1..65535, e.g. node0:1234")


def process() -> tuple[int, int]:
    """(this process's index, number of processes): (0, 1) unless distributed."""
    return jax.process_index(), jax.process_count()


def _client():
    # The coordinator's key-value store and barriers are what orbax and jax's own multihost
    # utilities build on; the public wrappers (multihost_utils) need cross-process device
    # collectives, which CPU backends do not set up by default.
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        raise RuntimeError("jax.distributed is not initialized")
    return client


def publish(key: str, value) -> None:
    _client().key_value_set(f"trainscape/{key}", json.dumps(value))


def fetch(key: str, timeout_ms: int = VERDICT_MS):
    return json.loads(_client().blocking_key_value_get(f"trainscape/{key}", timeout_ms))


def barrier(name: str, timeout_ms: int = BARRIER_MS) -> None:
    _client().wait_at_barrier(f"trainscape/{name}", timeout_ms)
