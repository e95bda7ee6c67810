"""One simulator process: ``python -m sim.shard JOB.json`` runs the cocotb bench on a job.

``sim.run`` writes the job (images, range, results file, plusargs) and starts one of these per
shard; the bench (``sim.bench.run_job``) appends a JSON line per image to the results file.
Exit status 0 when the cocotb test passed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_job(job_path: str | Path) -> int:
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    from hw.tools import verilator_env

    job_path = Path(job_path).resolve()
    job = json.loads(job_path.read_text())
    os.environ["PATH"] = verilator_env()["PATH"]
    os.environ.pop("PYTEST_CURRENT_TEST", None)  # else the runner acts as if under pytest
    runner = get_runner(job["sim"])
    plusargs = [f"+IMAGES={job['hex']}"]
    if job.get("trace"):
        plusargs.append(f"+TRACE={job['trace']}")
    if job.get("maxcycles"):
        plusargs.append(f"+MAXCYCLES={int(job['maxcycles'])}")
    pypath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    test_dir = Path(job["dir"])
    results = runner.test(test_module="sim.bench", hdl_toplevel=job["toplevel"],
                          hdl_toplevel_lang="verilog",
                          build_dir=job["build_dir"], test_dir=test_dir,
                          results_xml=str(test_dir / "results.xml"), plusargs=plusargs,
                          extra_env={"SIM_JOB": str(job_path), "PYTHONPATH": pypath,
                                     "COCOTB_LOG_LEVEL": job.get("log_level", "WARNING")})
    tests, failed = get_results(results)
    return 0 if tests and not failed else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m sim.shard JOB.json")
    sys.exit(run_job(sys.argv[1]))
