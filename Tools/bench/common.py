"""What the bench and scale scripts share (they run through with-loop-device.sh)."""
import argparse, os, subprocess, time


def tool_arguments(doc):
    """A parser with the three arguments with-loop-device.sh always passes."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenure", required=True, help="the tenure binary")
    ap.add_argument("--device", required=True, help="the loop device to use")
    ap.add_argument("--work", required=True, help="a scratch folder (run dirs, logs)")
    return ap


def sh(*args, env=None, check=True):
    """Runs a command, capturing its output; exits with both on failure when `check`."""
    r = subprocess.run(args, env=env, text=True, capture_output=True)
    if check and r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{r.stdout}{r.stderr}")
    return r


def wait_for(pred, timeout, what, step=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(step)
    raise SystemExit(f"timed out waiting for {what}")


def block_stat(dev):
    """The block device's counters: reads, bytes read, writes, bytes written."""
    with open(f"/sys/block/{os.path.basename(dev)}/stat") as f:
        v = [int(x) for x in f.read().split()]
    return {"reads": v[0], "read_bytes": v[2] * 512, "writes": v[4], "write_bytes": v[6] * 512}


def start_tenure_daemon(tenure, run_dir, io_timeout, host_name, *extra):
    """A `tenure daemon` in the foreground without a watchdog; returns once its socket exists."""
    os.makedirs(run_dir, exist_ok=True)
    # A socket left by a daemon that was killed would look like a started one.
    if os.path.exists(os.path.join(run_dir, "tenure.sock")):
        os.unlink(os.path.join(run_dir, "tenure.sock"))
    log = open(os.path.join(run_dir, "daemon.log"), "a")
    p = subprocess.Popen([tenure, "daemon", "--foreground", "--run-dir", run_dir, "--watchdog", "none",
                          "--io-timeout", str(io_timeout), "--host-name", host_name, "--config", "/dev/null", *extra],
                         stdout=log, stderr=log, start_new_session=True)
    wait_for(lambda: os.path.exists(os.path.join(run_dir, "tenure.sock")), 30, f"the daemon in {run_dir}")
    return p
