"""Generate the accelerator's Verilog, its plan and the simulation wrapper for a compiled model.

    python -m hw.generate --model models/default.sfm --out build/default/

writes into the output folder:

- ``accel.v``: the accelerator (``hw.top.Accelerator`` of ``hw.program.build_plan``), its
  memories (weights, biases, thresholds, program) initialised from the model;
- ``plan.json``: ``plan.to_json()`` (instructions, spike-map layout, counter slots, widths);
- ``sim_top.v``: the testbench wrapper the cocotb benches (``sim/``) drive: it holds a store
  of images read with ``$readmemh``, writes one into the accelerator, runs it, and collects
  logits, class, cycles and every counter slot into flat result registers (see
  ``wrapper_verilog``);
- ``manifest.json``: model path and sha256, lanes, file checksums.

Same inputs give byte-identical files. Errors: a missing or malformed model file
(``ModelFileError``) and a model the hardware cannot run (``PlanError``) end with a one-line
message naming the file and the reason.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from amaranth.hdl import Shape
from amaranth.lib import wiring

REPO = Path(__file__).resolve().parent.parent
TOP_NAME = "accel"
WRAPPER_NAME = "sim_top"
# Images the wrapper's store holds at once (the bench reloads it in chunks of this size).
STORE_IMAGES = 64


class GenerateError(ValueError):
    """A build that cannot be generated; the message says why."""


# -- ports --------------------------------------------------------------------------------------
# The accelerator's ports the wrapper connects: name -> direction seen from the accelerator.
PORTS = {"start": "in", "busy": "out", "done": "out", "img_addr": "in", "img_data": "in",
         "img_we": "in", "class_index": "out", "logit_addr": "in", "logit_data": "out",
         "cnt_addr": "in", "cnt_data": "out", "cycles": "out", "trace_valid": "out",
         "trace_instr": "out", "trace_addr": "out", "trace_data": "out"}


def port_shapes(top: wiring.Component) -> dict[str, Shape]:
    """Shape of every port the wrapper needs, read from the component's signature."""
    members = top.signature.members
    shapes = {}
    for name, direction in PORTS.items():
        if name not in members:
            raise GenerateError(f"The accelerator has no port {name!r} (the wrapper needs "
                                f"{', '.join(PORTS)})")
        m = members[name]
        if not m.is_port:
            raise GenerateError(f"The accelerator's member {name!r} is not a port")
        want = wiring.In if direction == "in" else wiring.Out
        if m.flow != want:
            raise GenerateError(f"The accelerator's port {name!r} must be {want.name}, "
                                f"not {m.flow.name}")
        shapes[name] = Shape.cast(m.shape)
    return shapes


# -- the wrapper --------------------------------------------------------------------------------
def _bits(n: int) -> int:
    """Bits of an unsigned counter that holds 0..n."""
    return max(1, int(n).bit_length())


def wrapper_layout(plan: dict, shapes: dict[str, Shape], store_images: int = STORE_IMAGES) -> dict:
    """What the wrapper holds and how its flat result registers are packed (for the benches)."""
    img = plan["image"]
    npix = img["height"] * img["width"]
    pixel_bits = 8 * img["channels"]  # channel c at bits 8c..8c+7
    if shapes["img_data"].width != pixel_bits:
        raise GenerateError(f"img_data is {shapes['img_data'].width} bits, the plan's image "
                            f"needs 8 x {img['channels']} channels = {pixel_bits}")
    if 2 ** shapes["img_addr"].width < npix:
        raise GenerateError(f"img_addr ({shapes['img_addr'].width} bits) cannot address "
                            f"{npix} pixels")
    slots = len(plan["counters"])
    if slots and 2 ** shapes["cnt_addr"].width < slots:
        raise GenerateError(f"cnt_addr ({shapes['cnt_addr'].width} bits) cannot address "
                            f"{slots} counter slots")
    classes = plan["classes"]
    if 2 ** shapes["logit_addr"].width < classes:
        raise GenerateError(f"logit_addr ({shapes['logit_addr'].width} bits) cannot address "
                            f"{classes} classes")
    return {"store_images": store_images, "pixels": npix, "pixel_bits": pixel_bits,
            "channels": img["channels"], "height": img["height"], "width": img["width"],
            "classes": classes, "logit_width": shapes["logit_data"].width,
            "logit_signed": shapes["logit_data"].signed,
            "class_width": shapes["class_index"].width, "slots": slots,
            "counter_width": shapes["cnt_data"].width,
            "trace_addr_width": shapes["trace_addr"].width,
            "trace_data_width": shapes["trace_data"].width,
            "trace_instr_width": shapes["trace_instr"].width}


def wrapper_verilog(layout: dict, shapes: dict[str, Shape], top_name: str = TOP_NAME,
                    name: str = WRAPPER_NAME, banner: str = "") -> str:
    """The testbench wrapper: a Verilog-2005 module for Verilator and Icarus.

    Commands (one-cycle pulses, sampled at the clock edge):

    - ``load``: ``$readmemh`` the file named by plusarg ``+IMAGES=<file>`` into the image
      store (``store_images`` images of ``pixels`` words, pixel (y, x) of image i at line
      i * pixels + y * W + x, channel c at bits 8c..8c+7);
    - ``go`` with ``index``: write image ``index`` of the store through ``img_*`` (one word a
      cycle), pulse ``start``, wait for ``done``, read the logits (``logit_addr``) and every
      counter slot (``cnt_addr``, one cycle latency) into ``res_logits`` / ``res_counters``,
      latch ``class_index`` and ``cycles``, then raise ``finished`` (held until the next
      ``go``). ``timeout`` rises with ``finished`` when ``done`` did not come within
      ``+MAXCYCLES=<n>`` cycles (default 200,000,000).

    With plusarg ``+TRACE=<file>``, every cycle with ``trace_valid`` appends a line
    ``<instr> <addr> <data hex>`` to the file, after a line ``# image <tag>`` per ``go``
    (``tag``: the bench's number for the image, sampled with ``go``).
    """
    L = layout
    store_words = L["store_images"] * L["pixels"]
    sw = _bits(store_words - 1)
    kw = _bits(max(L["classes"], L["slots"] + 1))
    iw = _bits(L["store_images"] - 1)
    lw, cw, slots = L["logit_width"], L["counter_width"], L["slots"]
    aw = shapes["img_addr"].width
    w = {n: s.width for n, s in shapes.items()}

    def decl(n):
        return f"[{w[n] - 1}:0] " if w[n] > 1 else ""

    counters_port = (f"  output reg  [{slots * cw - 1}:0] res_counters,\n" if slots else "")
    counter_read = (f"""          S_COUNT: begin
            if (k != 0) res_counters[(k - 1) * {cw} +: {cw}] <= cnt_data;
            if (k == {slots}) begin
              res_class <= class_index;
              res_cycles <= cycles;
              finished <= 1'b1;
              state <= S_IDLE;
            end
            k <= k + 1'b1;
          end
""" if slots else """          S_COUNT: begin
            res_class <= class_index;
            res_cycles <= cycles;
            finished <= 1'b1;
            state <= S_IDLE;
          end
""")
    return f"""// {name}: testbench wrapper around {top_name}, generated by hw.generate.{banner}
// Commands from the bench: `load` ($readmemh +IMAGES=<file>), `go` with `index` (run one image,
// `tag` names it in the trace);
// `finished` rises when logits, class, cycles and all {slots} counter slots are in res_*.
// Optional +TRACE=<file>: one line per spike-memory write (instr addr data), +MAXCYCLES=<n>.
// Define SIM_CLOCK=<half period> to run the clock inside the wrapper (then clk is an output).
module {name} (
`ifdef SIM_CLOCK
  output reg  clk,
`else
  input  wire clk,
`endif
  input  wire rst,
  input  wire load,
  input  wire go,
  input  wire [{iw - 1}:0] index,
  input  wire [31:0] tag,
  output reg  finished,
  output reg  timeout,
  output reg  [31:0] res_cycles,
  output reg  [{L['class_width'] - 1}:0] res_class,
  output reg  [{L['classes'] * lw - 1}:0] res_logits,
{counters_port}  output wire acc_busy
);
  localparam PIXELS = {L['pixels']};
  localparam S_IDLE = 3'd0, S_WRITE = 3'd1, S_START = 3'd2, S_RUN = 3'd3, S_LOGIT = 3'd4,
             S_COUNT = 3'd5;

  reg [{L['pixel_bits'] - 1}:0] store [0:{store_words - 1}];
  reg [8*1024-1:0] image_file;
  reg [8*1024-1:0] trace_file;
  reg have_images;
  integer trace_fd;
  reg [31:0] max_cycles;

  reg [2:0] state;
  reg [{sw - 1}:0] base;
  reg [{aw - 1}:0] pixel;
  reg [{kw - 1}:0] k;
  reg [31:0] waited;

`ifdef SIM_CLOCK
  // With SIM_CLOCK defined (half period in time units) the clock runs here, so an
  // event-driven simulator makes no call into the bench per edge.
  initial clk = 1'b0;
  always #(`SIM_CLOCK) clk = ~clk;
`endif

  wire start = (state == S_START);
  wire img_we = (state == S_WRITE);
  wire [{aw - 1}:0] img_addr = pixel;
  wire [{L['pixel_bits'] - 1}:0] img_data = store[base + pixel];
  wire {decl('logit_addr')}logit_addr = k;
  wire {decl('cnt_addr')}cnt_addr = k;
  wire busy, done, trace_valid;
  wire {decl('class_index')}class_index;
  wire {decl('logit_data')}logit_data;
  wire {decl('cnt_data')}cnt_data;
  wire {decl('cycles')}cycles;
  wire {decl('trace_instr')}trace_instr;
  wire {decl('trace_addr')}trace_addr;
  wire {decl('trace_data')}trace_data;
  assign acc_busy = busy;

  {top_name} dut (
    .clk(clk), .rst(rst),
    .start(start), .busy(busy), .done(done),
    .img_addr(img_addr), .img_data(img_data), .img_we(img_we),
    .class_index(class_index), .logit_addr(logit_addr), .logit_data(logit_data),
    .cnt_addr(cnt_addr), .cnt_data(cnt_data), .cycles(cycles),
    .trace_valid(trace_valid), .trace_instr(trace_instr), .trace_addr(trace_addr),
    .trace_data(trace_data)
  );

  initial begin
    have_images = $value$plusargs("IMAGES=%s", image_file);
    trace_fd = 0;
    if ($value$plusargs("TRACE=%s", trace_file)) trace_fd = $fopen(trace_file, "w");
    if (!$value$plusargs("MAXCYCLES=%d", max_cycles)) max_cycles = 32'd200000000;
    state = S_IDLE;
    finished = 1'b0;
    timeout = 1'b0;
  end

  always @(posedge clk) begin
    if (trace_fd != 0 && trace_valid)
      $fdisplay(trace_fd, "%0d %0d %h", trace_instr, trace_addr, trace_data);
    if (rst) begin
      state <= S_IDLE;
      finished <= 1'b0;
      timeout <= 1'b0;
      k <= 0;
      pixel <= 0;
    end else begin
      if (load && have_images) $readmemh(image_file, store);
      case (state)
        S_IDLE: if (go) begin
            finished <= 1'b0;
            timeout <= 1'b0;
            base <= index * PIXELS;
            pixel <= 0;
            state <= S_WRITE;
            if (trace_fd != 0) $fdisplay(trace_fd, "# image %0d", tag);
          end
        S_WRITE: begin
            pixel <= pixel + 1'b1;
            if (pixel == PIXELS - 1) state <= S_START;
          end
        S_START: begin
            waited <= 0;
            state <= S_RUN;
          end
        S_RUN: begin
            waited <= waited + 1;
            k <= 0;
            if (done) state <= S_LOGIT;
            else if (waited == max_cycles) begin
              timeout <= 1'b1;
              res_cycles <= waited;
              finished <= 1'b1;
              state <= S_IDLE;
            end
          end
        S_LOGIT: begin
            res_logits[k * {lw} +: {lw}] <= logit_data;
            if (k == {L['classes'] - 1}) begin
              k <= 0;
              state <= S_COUNT;
            end else k <= k + 1'b1;
          end
{counter_read}          default: state <= S_IDLE;
      endcase
    end
  end
endmodule
"""


# -- the build ----------------------------------------------------------------------------------
def _write(path: Path, text: str) -> bool:
    """Write ``text`` unless the file already holds it (keeps timestamps for build caches)."""
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_build(top: wiring.Component, plan: dict, out: str | Path, *, top_name: str = TOP_NAME,
                store_images: int = STORE_IMAGES, extra: dict | None = None) -> dict:
    """Write the Verilog of ``top``, its plan and the wrapper into ``out``; returns the manifest.

    ``plan`` is ``plan.to_json()``; any component with the accelerator's ports works (the sim
    tests use a stand-in).
    """
    from amaranth.back import verilog

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = port_shapes(top)
    layout = wrapper_layout(plan, shapes, store_images)
    accel = verilog.convert(top, name=top_name, emit_src=False)
    sha = plan.get("sha256", "")
    wrapper = wrapper_verilog(layout, shapes, top_name,
                              banner=f"\n// Model sha256 {sha}." if sha else "")
    plan_text = json.dumps(plan, indent=1, sort_keys=True) + "\n"
    files = {f"{top_name}.v": accel, f"{WRAPPER_NAME}.v": wrapper, "plan.json": plan_text}
    manifest = {"top": top_name, "wrapper": WRAPPER_NAME, "layout": layout,
                "model_sha256": sha, "lanes": plan.get("lanes"), **(extra or {}),
                "files": {n: _sha(t) for n, t in sorted(files.items())}}
    files["manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    for n, t in files.items():
        _write(out / n, t)
    return manifest


def generate(model: str | Path, out: str | Path, *, lanes: int = 8,
             store_images: int = STORE_IMAGES) -> dict:
    """build_plan + Accelerator for a model file, written by ``write_build``."""
    from model.modelfile import CompiledModel

    from .program import build_plan
    from .top import Accelerator

    cm = CompiledModel.load(model)
    plan = build_plan(cm, lanes=lanes)
    top = Accelerator(plan)
    return write_build(top, plan.to_json(), out, store_images=store_images,
                       extra={"model": Path(model).name})


def default_out(model: str | Path) -> Path:
    return REPO / "build" / Path(model).stem


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m hw.generate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=str(REPO / "models" / "default.sfm"),
                   help="compiled model file (.sfm)")
    p.add_argument("--out", default=None, help="output folder (default build/<model stem>/)")
    p.add_argument("--lanes", type=int, default=8, help="lanes P of the engine (default 8)")
    p.add_argument("--store-images", type=int, default=STORE_IMAGES,
                   help=f"images the wrapper's store holds (default {STORE_IMAGES})")
    args = p.parse_args(argv)
    if args.store_images < 1:
        raise GenerateError(f"--store-images must be a positive integer, not "
                            f"{args.store_images!r}")
    out = Path(args.out) if args.out else default_out(args.model)
    manifest = generate(args.model, out, lanes=args.lanes, store_images=args.store_images)
    print(f"{out}: {', '.join(manifest['files'])} and manifest.json", file=sys.stderr)
    return manifest


def cli():
    from model.modelfile import ModelFileError

    try:
        main()
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    except ModelFileError as e:
        sys.exit(f"error: bad model file: {e}")
    except GenerateError as e:
        sys.exit(f"error: {e}")
    except ValueError as e:  # PlanError is a ValueError: a model this hardware cannot run
        sys.exit(f"error: {type(e).__name__}: {e}")


if __name__ == "__main__":
    cli()
