"""``python -m hw.host`` over a real serial port: a pseudo-terminal whose other end is a device
emulator in Python (the protocol of docs/board.md, the golden model as the accelerator)."""

from __future__ import annotations

import os
import struct
import threading
import tty

import numpy as np
import pytest

from hw import host
from hw.crc import crc16


class Emulator(threading.Thread):
    """Answers frames on ``fd`` like the board, computing with ``model.golden``."""

    def __init__(self, fd, cm):
        super().__init__(daemon=True)
        self.fd, self.cm = fd, cm
        cfg = cm.config
        self.C, self.S, self.K = cfg["in_channels"], cfg["img_size"], cfg["num_classes"]
        self.image = np.zeros((self.S * self.S, self.C), np.uint8)
        self.result = (0, 0, [0] * self.K)
        self.stop = False

    def read(self, n):
        buf = b""
        while len(buf) < n:
            buf += os.read(self.fd, n - len(buf))
        return buf

    def reply(self, cmd, payload):
        os.write(self.fd, host.encode(cmd, payload, sync=host.SYNC_RSP))

    def run(self):
        from model import golden

        while not self.stop:
            if self.read(1)[0] != host.SYNC_REQ:
                continue
            head = self.read(3)
            n = head[1] | head[2] << 8
            body = self.read(n + 2)
            cmd, payload = head[0], body[:n]
            if crc16(head + body):
                self.reply(host.RSP_ERROR, bytes([host.ERR_CRC, cmd]))
            elif cmd == host.CMD_INFO:
                self.reply(cmd | 0x80, host.Info(1, self.C, self.S, self.S, self.K, 5, 4, 4,
                                                 2 + self.S * self.S * self.C, 100_000_000,
                                                 115200, bytes.fromhex(self.cm.checksum[:8]))
                           .pack())
            elif cmd == host.CMD_LOAD:
                a = struct.unpack("<H", payload[:2])[0]
                px = np.frombuffer(payload[2:], np.uint8).reshape(-1, self.C)
                self.image[a:a + len(px)] = px
                self.reply(cmd | 0x80, struct.pack("<H", a + len(px)))
            elif cmd == host.CMD_START:
                img = self.image.T.reshape(1, self.C, self.S, self.S)
                r = golden.run(self.cm, img)
                self.result = (int(r.classes[0]), 1234, [int(v) for v in r.logits[0]])
                self.reply(cmd | 0x80, struct.pack("<BI", *self.result[:2]))
            elif cmd == host.CMD_RESULT:
                cls, cyc, logits = self.result
                self.reply(cmd | 0x80, struct.pack("<BI", cls, cyc) + b"".join(
                    v.to_bytes(5, "little", signed=True) for v in logits))
            else:
                self.reply(host.RSP_ERROR, bytes([host.ERR_CMD, cmd]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from sim.host.run import tiny_model

    return tiny_model(tmp_path_factory.mktemp("m") / "tiny.sfm")


def test_cli_over_a_pty(tiny, tmp_path, capsys):
    pytest.importorskip("serial")
    from model.modelfile import CompiledModel

    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    emu = Emulator(master, CompiledModel.load(tiny))
    emu.start()
    rng = np.random.default_rng(0)
    npz = tmp_path / "imgs.npz"
    np.savez(npz, images=rng.integers(0, 256, (3, 8, 8, 3), dtype=np.uint8),
             labels=np.array([1, 2, 3]))
    status = host.main(["--port", os.ttyname(slave), "--images", str(npz), "--count", "2",
                        "--golden", str(tiny)])
    out = capsys.readouterr().out
    emu.stop = True
    assert status == 0, out
    assert "device: 3x8x8 images, 10 classes" in out
    assert out.count("golden equal") == 2 and "label 1" in out
    assert "2 of 2 images equal to the golden model" in out


def test_image_files_that_cannot_be_read_are_named(tmp_path):
    from matplotlib.image import imsave

    good = tmp_path / "a.png"
    imsave(good, np.full((8, 8, 3), 200, np.uint8))
    imgs, labels = host.load_images([str(good)])
    assert imgs.shape == (1, 3, 8, 8) and labels is None and int(imgs.max()) == 200
    text = tmp_path / "b.png"
    text.write_text("not a picture")
    with pytest.raises(SystemExit, match="b.png: not an image file this can read"):
        host.load_images([str(good), str(text)])
    with pytest.raises(SystemExit, match="c.png: no such image file"):
        host.load_images([str(tmp_path / "c.png")])
    (tmp_path / "d.npz").write_text("not an archive")
    with pytest.raises(SystemExit, match="d.npz: not an .npz archive"):
        host.load_images([str(tmp_path / "d.npz")])
    with pytest.raises(SystemExit, match="e.npz: no such file"):
        host.load_images([str(tmp_path / "e.npz")])
