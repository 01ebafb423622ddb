"""Image decoding safety, the EfficientNet-Lite0 encoder on real photographs, sources, per-page aggregation."""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from linksage.content.image import (
    FAILURES,
    Decoded,
    EfficientNetImageEncoder,
    ImageSource,
    ImageVectorizer,
    PrecomputedImageVectors,
    aggregate_pages,
    decode_image,
    write_image_table,
)
from linksage.errors import InputError


def photo_paths() -> dict[str, Path]:
    """Real photographs shipped with matplotlib and scikit-image (whichever is installed)."""
    found: dict[str, Path] = {}
    spec = importlib.util.find_spec("matplotlib")
    if spec and spec.origin:
        path = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if path.exists():
            found["grace_hopper"] = path
    spec = importlib.util.find_spec("skimage")
    if spec and spec.origin:
        for name in ("chelsea", "coffee", "astronaut"):
            path = Path(spec.origin).parent / "data" / f"{name}.png"
            if path.exists():
                found[name] = path
    return found


PHOTOS = photo_paths()


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny (wrong) body: a decompression-bomb shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def photo_bytes() -> dict[str, bytes]:
    if len(PHOTOS) < 2:
        pytest.skip("no sample photographs installed (matplotlib or scikit-image sample data)")
    return {name: path.read_bytes() for name, path in PHOTOS.items()}


@pytest.fixture(scope="module")
def encoder() -> EfficientNetImageEncoder:
    return EfficientNetImageEncoder("cpu", batch_size=4)


# --- decoding --------------------------------------------------------------------------------------------------


def test_decode_real_photo_centre_crop(photo_bytes: dict[str, bytes]) -> None:
    name, data = next(iter(photo_bytes.items()))
    got = decode_image(data)
    assert isinstance(got, Decoded)
    with Image.open(io.BytesIO(data)) as img:
        assert (got.width, got.height) == img.size
    assert got.pixels.shape == (224, 224, 3) and got.pixels.dtype == np.uint8 and got.pixels.std() > 10, name


def test_bad_bytes_are_reasons_not_exceptions(photo_bytes: dict[str, bytes]) -> None:
    data = jpeg(Image.open(io.BytesIO(next(iter(photo_bytes.values())))))
    assert decode_image(b"") == "empty"
    assert decode_image(b"GIF89a not really") in ("corrupt", "unsupported")
    assert decode_image(b"<html>hello</html>") == "unsupported"
    assert decode_image(data[: len(data) // 2]) == "corrupt"  # truncated JPEG
    assert decode_image(data, max_bytes=100) == "too_large"
    assert decode_image(png_header_only(100_000, 100_000)) == "bomb"  # refused from the header
    assert decode_image(png_header_only(30_000, 30_000)) == "bomb"  # under Pillow's own limit, over ours
    assert decode_image(data, max_pixels=1000) == "bomb"
    assert decode_image(png_header_only(64, 64)) == "corrupt"  # the body does not hold 64 x 64 pixels
    tiff = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiff, "TIFF")
    assert decode_image(tiff.getvalue()) == "unsupported"  # formats beyond what web pages serve stay closed


def test_odd_modes_and_shapes_decode() -> None:
    cases = {
        "palette+transparency": Image.new("P", (40, 30)),
        "grey": Image.new("L", (300, 20), 128),  # a banner: the crop stays square, no huge intermediate
        "rgba": Image.new("RGBA", (5, 500), (10, 20, 30, 0)),
        "one pixel": Image.new("RGB", (1, 1), (255, 0, 0)),
    }
    cases["palette+transparency"].info["transparency"] = 0
    for name, image in cases.items():
        buf = io.BytesIO()
        image.save(buf, "PNG")
        got = decode_image(buf.getvalue())
        assert isinstance(got, Decoded) and got.pixels.shape == (224, 224, 3), name
    cmyk = io.BytesIO()
    Image.new("CMYK", (64, 64), (0, 255, 0, 0)).save(cmyk, "JPEG")
    assert isinstance(decode_image(cmyk.getvalue()), Decoded)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_images_never_raise(cuts: list[tuple[int, int]]) -> None:
    base = bytearray(jpeg(Image.linear_gradient("L").resize((96, 64)), quality=70))
    for pos, value in cuts:
        base[pos % len(base)] = value
    got = decode_image(bytes(base), max_pixels=10_000_000)
    assert isinstance(got, Decoded) or got in FAILURES


# --- encoder ---------------------------------------------------------------------------------------------------


def test_efficientnet_features_classify_the_photo(encoder: EfficientNetImageEncoder, photo_bytes: dict) -> None:  # type: ignore[type-arg]
    """The pooled features are the classifier's input: ImageNet top-1 of known photos checks our preprocessing."""
    import torch

    # military uniform / mortarboard / academic gown; tabby / tiger / Egyptian cat; espresso / cup
    expected = {"grace_hopper": {652, 667, 400}, "chelsea": {281, 282, 285}, "coffee": {967, 968}}
    names = [n for n in expected if n in photo_bytes]
    if not names:
        pytest.skip("neither grace_hopper.jpg nor scikit-image's chelsea/coffee is installed")
    pixels = []
    for n in names:
        got = decode_image(photo_bytes[n])
        assert isinstance(got, Decoded)
        pixels.append(got.pixels)
    vecs = encoder.encode(np.stack(pixels))
    assert vecs.shape == (len(names), 1280) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    model = encoder._load()
    with torch.inference_mode():
        x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().sub(127.0).div(128.0)
        feats = model.extract_features(x).mean(dim=(2, 3))
        top3 = model._fc(feats).topk(3).indices.tolist()
    for n, top in zip(names, top3, strict=True):
        assert expected[n] & set(top), (n, top)
    np.testing.assert_allclose(vecs, (feats / feats.norm(dim=1, keepdim=True)).numpy(), atol=1e-5)


def test_same_photo_at_two_sizes_is_nearer_than_another_photo(
    encoder: EfficientNetImageEncoder, photo_bytes: dict[str, bytes]
) -> None:
    (a_name, a), (b_name, b) = list(photo_bytes.items())[:2]
    img = Image.open(io.BytesIO(a))
    small = jpeg(img.resize((img.width // 3, img.height // 3)), quality=60)
    pix = [decode_image(x) for x in (a, small, b)]
    assert all(isinstance(p, Decoded) for p in pix)
    v = encoder.encode(np.stack([p.pixels for p in pix if isinstance(p, Decoded)]))
    assert v[0] @ v[1] > 0.8 and v[0] @ v[1] > v[0] @ v[2] + 0.2, (a_name, b_name, v @ v.T)
    single = encoder.encode(np.stack([p.pixels for p in pix if isinstance(p, Decoded)][:1]))
    np.testing.assert_allclose(single[0], v[0], atol=1e-4)  # batch composition does not change a vector


# --- sources and vectorizer ------------------------------------------------------------------------------------


def test_image_source_reads_tables_and_local_files_only(tmp_path: Path) -> None:
    (tmp_path / "img" / "cdn.example.com" / "a").mkdir(parents=True)
    (tmp_path / "img" / "cdn.example.com" / "a" / "pic.jpg").write_bytes(b"host-path")
    (tmp_path / "img" / "rel.png").write_bytes(b"relative")
    (tmp_path / "abs.gif").write_bytes(b"absolute")
    (tmp_path / "big.jpg").write_bytes(b"x" * 2000)
    table = tmp_path / "bytes.parquet"
    assert write_image_table({"https://crawled.example/x.jpg": b"from-crawler"}, table) == 1
    src = ImageSource(table, tmp_path / "img", max_bytes=1000)
    urls = [
        "https://crawled.example/x.jpg",
        "https://cdn.example.com/a/pic.jpg?w=300",
        "rel.png",
        f"file://{tmp_path}/abs.gif",
        str(tmp_path / "abs.gif"),
        "https://cdn.example.com/../../abs.gif",
        "../abs.gif",
        "https://elsewhere.example/none.jpg",
        "ftp://cdn.example.com/a/pic.jpg",
        str(tmp_path / "big.jpg"),
        "",
    ]
    got = src.fetch_many(urls)
    assert got == [
        b"from-crawler",
        b"host-path",
        b"relative",
        b"absolute",
        b"absolute",
        "missing",  # ".." never climbs out of image_dir
        "missing",
        "missing",  # nothing is fetched from the network
        "missing",
        "too_large",
        "missing",
    ]
    assert ImageSource().fetch_many(["https://cdn.example.com/a/pic.jpg"]) == ["missing"]


def test_bytes_table_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"href": ["a"]}), bad)
    with pytest.raises(InputError, match=r"bad\.parquet"):
        ImageSource(bad)


def test_precomputed_vectors_lookup_and_validation(tmp_path: Path) -> None:
    path = tmp_path / "vecs.parquet"
    pq.write_table(pa.table({"url": ["a", "b"], "vector": [[3.0, 4.0], [0.0, 0.0]]}), path)
    pre = PrecomputedImageVectors(path)
    found, vecs = pre.lookup(["b", "zzz", "a"])
    assert found.tolist() == [True, False, True] and pre.dim == 2
    np.testing.assert_allclose(vecs, [[0, 0], [0, 0], [0.6, 0.8]])
    pq.write_table(pa.table({"url": ["a", "b"], "vector": [[1.0, 2.0], [1.0]]}), path)
    with pytest.raises(InputError, match=r"vecs.parquet, row 1, column 'vector'"):
        PrecomputedImageVectors(path)
    pq.write_table(pa.table({"url": ["a"], "vector": [[1.0, float("nan")]]}), path)
    with pytest.raises(InputError, match="not finite"):
        PrecomputedImageVectors(path)


def test_vectorizer_dedupes_by_bytes_counts_failures_and_uses_the_cache(
    tmp_path: Path, encoder: EfficientNetImageEncoder, photo_bytes: dict[str, bytes]
) -> None:
    from linksage.content.cache import VectorCache

    photo = next(iter(photo_bytes.values()))
    table = tmp_path / "bytes.parquet"
    write_image_table({"u1": photo, "u2": photo, "bad": photo[:300], "bomb": png_header_only(90_000, 90_000)}, table)
    cache = VectorCache.open(tmp_path / "cache", "image:test", 1280)
    vz = ImageVectorizer("efficientnet", source=ImageSource(table), cache=cache)
    vz.encoder = encoder
    urls = ["u1", "u2", "bad", "bomb", "gone"]
    ok, vecs, area, counts = vz.vectors(urls)
    assert ok.tolist() == [True, True, False, False, False]
    np.testing.assert_allclose(vecs[0], vecs[1])
    with Image.open(io.BytesIO(photo)) as img:
        assert area[0] == img.width * img.height
    assert counts == {
        "images_ok": 2,
        "images_encoded": 1,  # the same bytes behind two URLs: decoded and encoded once
        "images_failed_corrupt": 1,
        "images_failed_bomb": 1,
        "images_missing": 1,
        "image_cache_hits": 0,
    }
    ok2, vecs2, area2, counts2 = vz.vectors(urls)
    assert counts2["image_cache_hits"] == 1 and "images_encoded" not in counts2
    np.testing.assert_array_equal(ok2, ok)
    np.testing.assert_allclose(vecs2, vecs, atol=1e-3)
    np.testing.assert_array_equal(area2, area)


# --- aggregation -----------------------------------------------------------------------------------------------


def aggregate_reference(page, area, vectors, n_pages, m):  # type: ignore[no-untyped-def]
    """Loop version: weighted mean and the m largest images of each page."""
    dim = vectors.shape[1]
    mean, has = np.zeros((n_pages, dim)), np.zeros(n_pages, bool)
    tokens, mask = np.zeros((n_pages, m, dim)), np.zeros((n_pages, m), bool)
    for p in range(n_pages):
        rows = [i for i in range(len(page)) if page[i] == p]
        if not rows:
            continue
        has[p] = True
        s = sum(max(area[i], 1) * vectors[i] for i in rows)
        mean[p] = s / np.linalg.norm(s) if np.linalg.norm(s) > 0 else s
        for r, i in enumerate(sorted(rows, key=lambda i: (-max(area[i], 1), i))[:m]):
            tokens[p, r], mask[p, r] = vectors[i], True
    return mean, has, tokens, mask


@given(
    rows=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 50)), max_size=30),
    m=st.integers(0, 4),
    seed=st.integers(0, 1000),
)
@settings(max_examples=80, deadline=None)
def test_aggregate_pages_matches_the_loop_reference(rows: list[tuple[int, int]], m: int, seed: int) -> None:
    page = np.array([p for p, _ in rows], np.int64)
    area = np.array([a for _, a in rows], np.int64)
    vectors = np.random.default_rng(seed).standard_normal((len(rows), 3)).astype(np.float32)
    got = aggregate_pages(page, area, vectors, 6, m)
    want = aggregate_reference(page, area, vectors, 6, m)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-5)
