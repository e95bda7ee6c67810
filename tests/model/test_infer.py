"""python -m model.infer: the main job on the bundled model and images, and its errors."""

import json

import numpy as np
import pytest

from model import build_model
from model.compiler import compile_model, randomize
from model.data import BUNDLED_TEST, load_split
from model.golden import run
from model.infer import main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "r.sfm"
    compile_model(randomize(build_model("spikingformer-1-32"), 4)).save(path)
    return path


def test_accuracy_on_the_bundled_images(model_file, capsys):
    out = main(["--model", str(model_file), "-n", "16", "--json"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line == out and out["images"] == 16
    x, y = load_split(BUNDLED_TEST, "test")
    from model.modelfile import CompiledModel
    res = run(CompiledModel.load(model_file), x[:16])
    assert out["accuracy"] == float((res.classes == y[:16]).mean())
    assert out["sops_per_image"] == float(res.total("sops").mean())


def test_png_images(model_file, tmp_path, capsys):
    from matplotlib.image import imsave
    x, _ = load_split(BUNDLED_TEST, "test")
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        imsave(p, x[i].transpose(1, 2, 0))
        paths.append(str(p))
    main(["--model", str(model_file), "--images", *paths])
    text = capsys.readouterr().out
    from model.modelfile import CompiledModel
    res = run(CompiledModel.load(model_file), x[:2])
    for p, lg in zip(paths, res.logits, strict=True):
        assert f"{p}: " in text and str(lg.tolist()) in text


def test_wrong_image_size(model_file, tmp_path):
    from matplotlib.image import imsave
    p = tmp_path / "big.png"
    imsave(p, np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ValueError, match=r"a CIFAR image is 32x32 RGB, not \[40, 40, "):
        main(["--model", str(model_file), "--images", str(p)])


def test_a_file_that_is_no_image_is_refused_by_name(model_file, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(ValueError, match=r"notes.png: not an image file this can read"):
        main(["--model", str(model_file), "--images", str(text)])
    with pytest.raises(FileNotFoundError, match=r"gone.png: no such image file"):
        main(["--model", str(model_file), "--images", str(tmp_path / "gone.png")])


def test_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="No compiled model"):
        main(["--model", str(tmp_path / "none.sfm")])
