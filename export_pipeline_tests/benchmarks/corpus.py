"""A benchmark corpus of footage classes, generated deterministically with FFmpeg's lavfi.

Each class stands for a kind of footage that stresses an encoder differently (fine detail
over the whole frame, film grain, fast pans, flat animation, low light, on-screen text) at
its own frame rate and source size (720p, upscaled by a 1080p export; native 1080p; 1440p
and 4k, downscaled). `make_clips(footage, directory)` writes its clips: H.264 (x264 CRF 16,
so the source is not what limits quality) with AAC audio in MP4, each tagged
`comment=corpus:<class>:<n>`. Same arguments, same pictures: every random source has a
seed derived from the class and the clip number, and the files are cached by name.

    .venv/bin/python -m export_pipeline_tests.benchmarks.corpus DIR [--classes a,b] [--clips N]

writes the clips (and one preview PNG per class) for a look before benchmarking.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
MONO = FONT_DIR / "DejaVuSansMono.ttf"
SANS = FONT_DIR / "DejaVuSans.ttf"
SOURCE_CRF = 16  # high enough quality that the source is not the limit of any measurement
SECONDS = 5.0
CLIPS = 12
VERSION = 1  # of the recipes: part of the clips' file names, so a change is not served stale


@dataclass(frozen=True)
class Recipe:
    """FFmpeg inputs and a filter graph that produces the clip's picture as `[v]`
    (and its sound as `[a]` when `audio` is true; otherwise a tone is added)."""

    inputs: list[str]
    graph: str
    audio: bool = False


# A builder makes the recipe of clip `n` lasting `seconds`; `assets` is where it may keep
# the still images it needs (textures, text files), cached like the clips.
Builder = Callable[["Footage", int, float, Path], Recipe]


@dataclass(frozen=True)
class Footage:
    """One class of footage: what it stands for, its source format and how it is made."""

    name: str
    what: str
    width: int
    height: int
    fps: int
    build: Builder
    clips: int = CLIPS  # clips in a full corpus (fewer for 4k, to stay practical)

    @property
    def scale(self) -> float:
        """Source width relative to 1080p: sizes and speeds in the recipes scale with it."""
        return self.width / 1920

    def frames(self, seconds: float) -> int:
        return max(1, round(seconds * self.fps))

    def scaled(self, divisor: int) -> Footage:
        """The same class at 1/`divisor` of the size (same content, rate and seeds), for
        tests that must be quick: every size and speed in the recipes follows `scale`."""
        return replace(self, width=_px(self.width / divisor), height=_px(self.height / divisor))


def _px(value: float) -> int:
    """An even pixel count (yuv420p needs even sizes)."""
    return max(2, int(round(value / 2)) * 2)


def run_ffmpeg(argv: list[str]) -> None:
    """Run FFmpeg quietly; a failure raises with the end of its stderr."""
    done = subprocess.run(["ffmpeg", "-v", "error", "-y", "-nostdin", *argv],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg {' '.join(argv)[:400]} ... failed: {done.stderr[-2000:]}")


def texture(path: Path, seed: int, width: int, height: int, tint: str = "0x78b848") -> Path:
    """A foliage-like still: sharp-edged blobs (leaves and the gaps between them) at three
    scales multiplied together, coloured by a slowly varying tint. Detail everywhere, at
    every scale down to single pixels, like leaves, grass or gravel filmed in focus."""
    if path.exists():
        return path
    w, h = width, height
    graph = (
        f"color=c=gray:s={_px(w / 4)}x{_px(h / 4)}:d=0.04,format=yuv444p,"
        f"noise=c0s=100:all_seed={seed},gblur=sigma=1.5,"
        f"lutyuv=y='clip((val-128)*5+128,20,255)',scale={w}:{h}:flags=bicubic,format=gbrp[big];"
        f"color=c=gray:s={_px(w / 2)}x{_px(h / 2)}:d=0.04,format=yuv444p,"
        f"noise=c0s=90:all_seed={seed + 1},gblur=sigma=1,"
        f"lutyuv=y='clip((val-128)*3+170,60,255)',scale={w}:{h}:flags=bicubic,format=gbrp[mid];"
        f"color=c=gray:s={w}x{h}:d=0.04,format=yuv444p,noise=c0s=80:all_seed={seed + 2},"
        f"gblur=sigma=0.6,lutyuv=y='clip(val+70,100,255)',format=gbrp[fine];"
        f"color=c={tint}:s=32x18:d=0.04,format=yuv444p,"
        f"noise=c0s=40:c1s=25:c2s=25:all_seed={seed + 3},scale={w}:{h}:flags=bicubic,"
        f"format=gbrp[tint];"
        "[big][mid]blend=all_mode=multiply[a];[a][fine]blend=all_mode=multiply[b];"
        "[b][tint]blend=all_mode=multiply"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial.png")
    run_ffmpeg(["-f", "lavfi", "-i", graph, "-frames:v", "1", str(partial)])
    partial.replace(path)
    return path


def _still(fps: int) -> str:
    """The filter chain that turns a one-picture input into an endless stream at `fps`."""
    return f"loop=loop=-1:size=1,setpts=N/{fps}/TB"


# --- the classes ---------------------------------------------------------------------------


def build_pattern(f: Footage, n: int, seconds: float, assets: Path) -> Recipe:
    """The clip of the original benchmark (bench_export.make_clip): a moving test pattern,
    a hue per clip, light temporal noise."""
    graph = (
        f"testsrc2=size={f.width}x{f.height}:rate={f.fps}:duration={seconds},"
        f"hue=h={n * 29 % 360},noise=alls=10:allf=t+u:all_seed={n + 1}[v]"
    )
    return Recipe([], graph)


def build_detail(f: Footage, n: int, seconds: float, assets: Path) -> Recipe:
    """Foliage filmed in focus: two textured layers moving against each other (a pan and a
    slight sway with sub-pixel rotation), the brighter wins, as leaves in front of leaves."""
    k = f.scale
    w, h = f.width, f.height
    tw, th = _px(w * 4 / 3), _px(h * 4 / 3)
    front = texture(assets / f"leaves-{tw}x{th}-{n * 10 + 1}.png", n * 10 + 1, tw, th)
    back = texture(assets / f"leaves-{tw}x{th}-{n * 10 + 2}.png", n * 10 + 2, tw, th, "0x60a050")
    vx, vy = (40 + 15 * (n % 4)) * k, (12 if n % 2 else -12) * k
    bw, bh = _px(w * 7 / 6), _px(h * 7 / 6)
    graph = (
        f"[0:v]{_still(f.fps)},"
        f"crop={w}:{h}:x='{60 * k:.0f}+t*{vx:.1f}':y='{120 * k:.0f}+t*{vy:.1f}'[a];"
        f"[1:v]{_still(f.fps)},"
        f"crop={bw}:{bh}:x='{250 * k:.0f}-t*{(20 + 5 * (n % 3)) * k:.1f}':y='{90 * k:.0f}',"
        f"rotate=a='0.03*sin(2*PI*t/5+{n})':ow={w}:oh={h}:bilinear=1[b];"
        f"[a][b]blend=all_mode=lighten,hue=h={(n * 9) % 50 - 25},format=yuv420p[v]"
    )
    return Recipe(["-i", str(front), "-i", str(back)], graph)


def build_grain(f: Footage, n: int, seconds: float, assets: Path) -> Recipe:
    """A film scan: soft, slowly moving picture (colour fields and out-of-focus texture)
    under strong temporal grain, stronger in luma than in chroma."""
    w, h = f.width, f.height
    tw, th = _px(w * 4 / 3), _px(h * 4 / 3)
    soft = texture(assets / f"leaves-{tw}x{th}-{n * 10 + 5}.png", n * 10 + 5, tw, th, "0xc0a080")
    graph = (
        f"gradients=s={w}x{h}:r={f.fps}:d={seconds}:speed=0.02:nb_colors=4:seed={n + 1},"
        "format=gbrp[fields];"
        f"[0:v]{_still(f.fps)},crop={w}:{h}:x='{40 + 20 * n}+t*30':y='{100 + 7 * n}',"
        "gblur=sigma=3,lutrgb=r='val*0.6+100':g='val*0.6+100':b='val*0.6+100',format=gbrp[soft];"
        "[fields][soft]blend=all_mode=multiply,format=yuv420p,"
        f"noise=c0s=20:c0f=t:c1s=7:c1f=t:c2s=7:c2f=t:all_seed={n + 11}[v]"
    )
    return Recipe(["-i", str(soft)], graph)


# Places in the Mandelbrot set with structure at many scales: (x, y, scale).
MANDELBROT_VIEWS = [(-0.16, 1.035, 0.1), (-1.25, 0.02, 0.15), (-0.745, 0.11, 0.08),
                    (-0.75, 0.0, 1.2)]  # fmt: skip


def build_motion(f: Footage, n: int, seconds: float, assets: Path) -> Recipe:
    """Fast pans: a camera whipping across a wide, detailed panorama (fractal and texture)
    at up to about 20 pixels a frame, with motion blur."""
    w, h = f.width, f.height
    pw, ph = _px(w * 3), _px(h * 2)  # panorama, 2x wider and 1.33x higher than the window
    pano = assets / f"panorama-{pw}x{ph}-{n}.png"
    if not pano.exists():
        tex = texture(assets / f"leaves-{pw}x{ph}-{n * 10 + 7}.png", n * 10 + 7, pw, ph, "0xd0d0d0")
        x, y, zoom = MANDELBROT_VIEWS[n % len(MANDELBROT_VIEWS)]
        fractal = (
            f"mandelbrot=s={_px(pw / 3)}x{_px(ph / 3)}:maxiter=300:start_x={x}:start_y={y}:"
            f"start_scale={zoom}:outer=normalized_iteration_count"
        )
        graph = (
            f"[0:v]scale={pw}:{ph}:flags=lanczos,hue=h={n * 37 % 360},format=gbrp[m];"
            "[1:v]format=gbrp,lutrgb=r='val*0.6+110':g='val*0.6+110':b='val*0.6+110'[t];"
            f"[m][t]blend=all_mode=multiply,drawgrid=w={_px(w / 5)}:h={_px(h / 4)}:t=3:c=white@0.6"
        )
        partial = pano.with_name(f".{pano.name}.partial.png")
        run_ffmpeg(["-f", "lavfi", "-i", fractal, "-i", str(tex), "-filter_complex", graph,
                    "-frames:v", "1", str(partial)])  # fmt: skip
        partial.replace(pano)
    # The window is 1.5x the output, scaled down: pans move in 2/3-pixel steps, not whole ones.
    cw, ch = _px(w * 1.5), _px(h * 1.5)
    ax, ay = (pw - cw) / 2, (ph - ch) / 2
    freq = 0.22 + 0.04 * (n % 4)
    graph = (
        f"[0:v]{_still(f.fps)},"
        f"crop={cw}:{ch}:x='{ax:.0f}*(1+sin(2*PI*{freq:.2f}*t+{n}))':"
        f"y='{ay:.0f}*(1+0.8*sin(2*PI*0.13*t+{2 * n}))',scale={w}:{h}:flags=bicubic,"
        "format=yuv420p,tmix=frames=3[v]"
    )
    return Recipe(["-i", str(pano)], graph)


def _disk(colour: str, size: int) -> str:
    """A flat disk with a dark outline, as an RGBA source for overlay."""
    r = size / 2
    return (
        f"color=c={colour}:s={size}x{size},format=rgba,"
        f"geq=r='if(lt(hypot(X-{r},Y-{r}),{r - 5}),r(X,Y),20)':"
        f"g='if(lt(hypot(X-{r},Y-{r}),{r - 5}),g(X,Y),20)':"
        f"b='if(lt(hypot(X-{r},Y-{r}),{r - 5}),b(X,Y),20)':"
        f"a='if(lt(hypot(X-{r},Y-{r}),{r - 1}),255,0)'"
    )


def build_cartoon(f: Footage, n: int, seconds: float, assets: Path) -> Recipe:
    """Flat cartoon animation: a static flat-colour set (sky, hills, a house) with outlined
    shapes of flat colour moving across it; sharp edges, no texture, no noise."""
    k = f.scale
    w, h = f.width, f.height
    sky = ["0x87ceeb", "0xf4a460", "0x6a5acd", "0x98fb98"][n % 4]
    ground = h * 2 // 3
    set_ = (
        f"color=c={sky}:s={w}x{h}:r={f.fps}:d={seconds},"
        f"drawbox=x=0:y={ground}:w={w}:h={h - ground}:c=0x3c9a3c:t=fill,"
        f"drawbox=x=0:y={ground}:w={w}:h={_px(6 * k)}:c=black:t=fill,"
        f"drawbox=x={_px(w * 0.62)}:y={_px(ground - 260 * k)}:w={_px(300 * k)}:h={_px(260 * k)}:"
        "c=0xfff0c8:t=fill,"
        f"drawbox=x={_px(w * 0.62)}:y={_px(ground - 260 * k)}:w={_px(300 * k)}:h={_px(260 * k)}:"
        f"c=black:t={_px(6 * k)},"
        f"drawbox=x={_px(w * 0.62 + 110 * k)}:y={_px(ground - 140 * k)}:w={_px(80 * k)}:"
        f"h={_px(140 * k)}:c=0x8b4513:t=fill[set]"
    )
    movers = [
        (_disk("0xffd700", _px(150 * k)), f"{w * 0.1:.0f}+{20 * k:.0f}*sin(t)",
         f"{h * 0.08:.0f}+{10 * k:.0f}*sin(0.7*t)"),
        (_disk("0xe0301e", _px(110 * k)),
         f"mod({260 * k:.0f}*t+{97 * n},{w + 220 * k:.0f})-{110 * k:.0f}",
         f"{ground - 110 * k:.0f}-abs({160 * k:.0f}*sin(3*t))"),
        (f"color=c=0x1e90ff:s={_px(220 * k)}x{_px(120 * k)},drawbox=0:0:iw:ih:black:{_px(6 * k)}",
         f"{w:.0f}-mod({340 * k:.0f}*t+{53 * n},{w + 260 * k:.0f})", f"{ground + 60 * k:.0f}"),
        (f"color=c=0xffffff:s={_px(200 * k)}x{_px(80 * k)},drawbox=0:0:iw:ih:0xb0b0b0:{_px(4 * k)}",
         f"mod({60 * k:.0f}*t+{131 * n},{w + 200 * k:.0f})-{200 * k:.0f}", f"{h * 0.15:.0f}"),
        (_disk("0x9932cc", _px(70 * k)), f"{w / 2:.0f}+{w * 0.35:.0f}*sin(1.3*t+{n})",
         f"{ground + 120 * k:.0f}+{60 * k:.0f}*cos(2.1*t)"),
    ]  # fmt: skip
    parts = [set_]
    last = "set"
    for i, (source, x, y) in enumerate(movers):
        parts.append(f"{source}[m{i}]")
        out = f"o{i}" if i < len(movers) - 1 else "out"
        parts.append(f"[{last}][m{i}]overlay=x='{x}':y='{y}':eval=frame:shortest=1[{out}]")
        last = out
    parts.append("[out]format=yuv420p[v]")
    return Recipe([], ";".join(parts))


def build_lowlight(f: Footage, n: int, seconds: float, assets: Path) -> Recipe:
    """A night scene: dim, desaturated, slightly soft texture under sensor noise (strong in
    the dark, in luma and chroma), with a moving light passing through."""
    k = f.scale
    w, h = f.width, f.height
    tw, th = _px(w * 4 / 3), _px(h * 4 / 3)
    tex = texture(assets / f"leaves-{tw}x{th}-{n * 10 + 3}.png", n * 10 + 3, tw, th, "0x8090a0")
    glow = _px(220 * k)
    graph = (
        f"[0:v]{_still(f.fps)},crop={w}:{h}:x='{80 * k:.0f}+t*{25 * k:.1f}':y='{60 * k:.0f}',"
        "gblur=sigma=1.2,eq=brightness=-0.18:contrast=0.45:saturation=0.5:gamma=0.9[dark];"
        f"color=c=0xfff2c0:s={glow}x{glow},format=rgba,"
        f"geq=r='r(X,Y)':g='g(X,Y)':b='b(X,Y)':"
        f"a='255*exp(-(pow(X-{glow / 2},2)+pow(Y-{glow / 2},2))/{(glow / 5) ** 2 * 2:.0f})'[light];"
        f"[dark][light]overlay=x='mod({200 * k:.0f}*t+{101 * n},{w + glow})-{glow}':"
        f"y='{h * 0.55:.0f}+{40 * k:.0f}*sin(t)':eval=frame,format=yuv420p,"
        f"noise=c0s=12:c0f=t:c1s=7:c1f=t:c2s=7:c2f=t:all_seed={n + 21}[v]"
    )  # fmt: skip
    return Recipe(["-i", str(tex)], graph)


def _code_lines(n: int, count: int) -> list[str]:
    """Deterministic source-code-like lines (no '%': drawtext would expand it)."""
    words = ["export", "render", "segment", "clip", "duration", "settings", "frames",
             "storage", "request", "status", "encode", "probe", "join", "audio",
             "video"]  # fmt: skip
    lines = []
    for i in range(count):
        a, b, c = words[(i * 7 + n) % 15], words[(i * 3 + 2 * n) % 15], words[(i * 11) % 15]
        indent = "    " * ((i * 5 + n) % 4)
        shape = i % 6
        if shape == 0:
            lines.append(f"def {a}_{b}({c}: int, {b}: str = '{a}') -> dict[str, float]:")
        elif shape == 1:
            lines.append(f'{indent}"""Return the {a} of every {b} in the {c} list."""')
        elif shape == 2:
            lines.append(f"{indent}{a} = {b}.{c}({i * 37 % 1000}, timeout_s={i % 60}.5)")
        elif shape == 3:
            lines.append(f"{indent}if {a} and {b} is not None:  # {c} {i * 13 % 97} ms")
        elif shape == 4:
            lines.append(f"{indent}    return [{a}[k] for k in {b} if k != {c!r}]")
        else:
            lines.append("")
    return lines


def build_text(f: Footage, n: int, seconds: float, assets: Path) -> Recipe:
    """A screen recording: an editor with small monospaced text scrolling, a file sidebar,
    a scrolling log panel in smaller text, a ticking clock and a moving pointer; dark or
    light theme. Thin sharp glyphs on flat backgrounds."""
    k = f.scale
    w, h = f.width, f.height
    dark = n % 3 != 2
    bg, panel, fg, dim = (
        ("0x1e1e1e", "0x252526", "0xd4d4d4", "0x858585")
        if dark
        else ("0xffffff", "0xf3f3f3", "0x1f1f1f", "0x6e7681")
    )
    assets.mkdir(parents=True, exist_ok=True)
    code = assets / f"code-{n}.txt"
    code.write_text("\n".join(_code_lines(n, 160)))
    numbers = assets / "numbers.txt"
    numbers.write_text("\n".join(str(i) for i in range(1, 161)))
    files = assets / f"files-{n}.txt"
    names = ["render", "commands", "probe", "runner", "layout", "poster", "assets", "sensors"]
    files.write_text("\n".join(f"{'v ' if i % 5 == 0 else '    '}{names[(i + n) % 8]}_{i}.py"
                               for i in range(60)))  # fmt: skip
    log = assets / f"log-{n}.txt"
    log.write_text("\n".join(
        f"12:{i // 60:02d}:{i % 60:02d} INFO exp-{1000 + n * 100 + i} step encoded_video "
        f"segment {i % 12 + 1}/12 {(i * 37) % 1000} ms" for i in range(240)))  # fmt: skip
    speed, log_speed = 45 + 10 * (n % 3), 70 + 10 * (n % 4)
    fs, small = _px(17 * k), _px(13 * k)
    side, top = _px(300 * k), _px(40 * k)
    right = _px(w - 520 * k)

    def text(file: Path, size: int, colour: str, x: str, y: str, font: Path = MONO) -> str:
        return (f"drawtext=fontfile={font}:textfile={file}:expansion=none:fontsize={size}:"
                f"fontcolor={colour}:line_spacing={_px(5 * k)}:x={x}:y='{y}'")  # fmt: skip

    graph = ",".join([
        f"color=c={bg}:s={w}x{h}:r={f.fps}:d={seconds}",
        f"drawbox=x=0:y=0:w={w}:h={top}:c={panel}:t=fill",
        f"drawbox=x=0:y={top}:w={side}:h={h - top}:c={panel}:t=fill",
        f"drawbox=x={right}:y={top}:w={w - right}:h={h - top}:c={panel}:t=fill",
        f"drawbox=x={right}:y={top}:w={_px(2 * k)}:h={h - top}:c={dim}:t=fill",
        text(files, small, fg, f"{_px(10 * k)}", f"{top + _px(10 * k)}", SANS),
        text(numbers, fs, dim, f"{side + _px(10 * k)}", f"{top + _px(10 * k)}-t*{speed * k:.0f}"),
        text(code, fs, fg, f"{side + _px(60 * k)}", f"{top + _px(10 * k)}-t*{speed * k:.0f}"),
        text(log, small, fg, f"{right + _px(12 * k)}",
             f"{top + _px(10 * k)}-t*{log_speed * k:.0f}"),
        f"drawbox=x=0:y=0:w={w}:h={top}:c={panel}:t=fill",  # the title bar stays on top
        f"drawtext=fontfile={SANS}:text='export_pipeline - render.py':fontsize={_px(15 * k)}:"
        f"fontcolor={fg}:x={_px(12 * k)}:y={_px(12 * k)}",
        f"drawtext=fontfile={MONO}:text='%{{pts\\:hms}}':fontsize={_px(15 * k)}:fontcolor={fg}:"
        f"x={w - _px(160 * k)}:y={_px(12 * k)}",
    ])  # fmt: skip
    # The pointer moves, so it is an overlay (drawbox places its box once, not per frame).
    pointer = (
        f"color=c={fg}:s={_px(12 * k)}x{_px(18 * k)}:r={f.fps}[ptr];"
        f"[ui][ptr]overlay=x='{w * 0.3:.0f}+{w * 0.25:.0f}*sin(0.9*t+{n})':"
        f"y='{h * 0.5:.0f}+{h * 0.3:.0f}*sin(0.6*t)':eval=frame:shortest=1,format=yuv420p[v]"
    )
    return Recipe([], f"{graph}[ui];{pointer}")


CLASSES: dict[str, Footage] = {
    f.name: f
    for f in [
        Footage("pattern", "the original benchmark's clip: test pattern, light noise",
                1280, 720, 24, build_pattern),
        Footage("detail", "fine detail over the whole frame (foliage), moving layers",
                1920, 1080, 25, build_detail),
        Footage("grain", "film grain: soft picture, strong temporal grain", 1920, 1080, 24,
                build_grain),
        Footage("motion", "fast pans with motion blur over a detailed panorama", 1280, 720, 60,
                build_motion),
        Footage("cartoon", "flat cartoon animation: flat colours, outlines, moving shapes",
                1280, 720, 30, build_cartoon),
        Footage("lowlight", "dark low-light scene with sensor noise and a moving light",
                1920, 1080, 25, build_lowlight),
        # 1440p (a high-DPI screen), so the export scales it: a 1080p30 H.264 recording
        # within the bitrate cap would be stream-copied, and no encoder setting would matter.
        Footage("text", "screen recording at 1440p: small scrolling text, UI panels",
                2560, 1440, 30, build_text),
        Footage("detail4k", "fine detail (foliage) shot in 4k, downscaled by the export",
                3840, 2160, 24, build_detail, clips=6),
    ]
}  # fmt: skip


def audio_source(n: int, seconds: float) -> str:
    """A stereo tone per clip with a little noise (so AAC has something to do)."""
    f1, f2 = 220 + 40 * n, 330 + 40 * n
    return (
        f"aevalsrc='0.2*sin(2*PI*{f1}*t)+0.03*(random(0)-0.5)|"
        f"0.2*sin(2*PI*{f2}*t)+0.03*(random(1)-0.5)':s=48000:d={seconds}"
    )


def clip_path(directory: Path, footage: Footage, n: int, seconds: float) -> Path:
    """Where clip `n` is cached: the name says everything that changes its pictures (bump
    VERSION when a recipe changes)."""
    return directory / (
        f"{footage.name}-v{VERSION}-{footage.width}x{footage.height}-{footage.fps}fps-"
        f"{seconds:g}s-{n:02d}.mp4"
    )


def make_clip(footage: Footage, n: int, path: Path, seconds: float = SECONDS) -> Path:
    """Write clip `n` of `footage` to `path` (unless it exists): exactly `seconds` of video
    at the class's size and rate, H.264 yuv420p CRF 16 and AAC stereo 48 kHz."""
    if path.exists():
        return path
    recipe = footage.build(footage, n, seconds, path.parent / "assets")
    inputs = list(recipe.inputs)
    audio_map = "[a]"
    if not recipe.audio:
        audio_map = f"{sum(1 for arg in inputs if arg == '-i')}:a"
        inputs += ["-f", "lavfi", "-i", audio_source(n, seconds)]
    partial = path.with_name(f".{path.stem}.partial.mp4")
    run_ffmpeg([
        *inputs, "-filter_complex", recipe.graph, "-map", "[v]", "-map", audio_map,
        # -t, not -frames:v: a frame limit would end the file before the audio is complete.
        "-r", str(footage.fps), "-t", f"{seconds}",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(SOURCE_CRF), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2",
        "-metadata", f"comment=corpus:{footage.name}:{n}", "-movflags", "+faststart",
        "-f", "mp4", str(partial),
    ])  # fmt: skip
    partial.replace(path)
    return path


def make_clips(
    footage: Footage, directory: Path, clips: int | None = None, seconds: float = SECONDS
) -> list[Path]:
    """The class's clips in `directory` (made if missing): `clips` of them (default: the
    class's own count), each `seconds` long."""
    directory.mkdir(parents=True, exist_ok=True)
    count = footage.clips if clips is None else clips
    return [
        make_clip(footage, n, clip_path(directory, footage, n, seconds), seconds)
        for n in range(count)
    ]


def real_footage(sources: list[Path], clips: int = CLIPS, width: int = 0, fps: int = 30) -> Footage:
    """A class of real film or camera footage: clip `n` is the start of source `n % len`
    (looped when shorter than a clip), fitted into one 16:9 frame (`width`, by default the
    widest source's) with black bars and brought to `fps`. The bars are added here, in the
    source, because the reference command and the SSIM reference stretch to 1920x1080 where
    the pipeline would add them. No such file ships with the repository (see README,
    Performance, for the CC0 clips used); pass them with `bench_corpus --real A,B,C`."""
    infos = [probe(source) for source in sources]
    w = _px(width or max(info["width"] for info in infos))
    h = _px(w * 9 / 16)

    def build(f: Footage, n: int, seconds: float, assets: Path) -> Recipe:
        source, info = sources[n % len(sources)], infos[n % len(infos)]
        graph = (
            f"[0:v]fps={fps},scale={w}:{h}:force_original_aspect_ratio=decrease,"
            f"pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p[v]"
        )
        if info["audio"]:
            graph += ";[0:a]aresample=48000[a]"
        return Recipe(["-stream_loop", "-1", "-i", str(source)], graph, audio=info["audio"])

    names = ", ".join(source.name for source in sources)
    return Footage("real", f"real camera footage: {names}", w, h, fps, build, clips)


def probe(path: Path) -> dict:
    """What ffprobe says about a clip: size, rate, frames, duration, codecs, corpus tag."""
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_streams", "-show_format",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    data = json.loads(done.stdout)
    video = next(s for s in data["streams"] if s["codec_type"] == "video")
    audio = next((s for s in data["streams"] if s["codec_type"] == "audio"), None)
    num, den = (int(x) for x in video["r_frame_rate"].split("/"))
    return {
        "width": int(video["width"]),
        "height": int(video["height"]),
        "fps": num / den,
        "frames": int(video.get("nb_read_packets") or 0),
        "duration": float(data["format"]["duration"]),
        "video_codec": video["codec_name"],
        "pix_fmt": video.get("pix_fmt"),
        "audio": audio is not None,
        "audio_codec": audio["codec_name"] if audio else None,
        "bit_rate": int(data["format"].get("bit_rate") or 0),
        "comment": data["format"].get("tags", {}).get("comment"),
    }


def luma_stats(path: Path, frames: int = 8) -> dict[str, float]:
    """Mean luma (YAVG) and mean frame-to-frame luma difference (YDIF) over the first frames:
    cheap evidence of a class's character (low light is dark, grain moves every frame)."""
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-frames:v", str(frames), "-vf",
         "signalstats,metadata=mode=print:file=-", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    values: dict[str, list[float]] = {"YAVG": [], "YDIF": []}
    for line in done.stdout.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in values:
            values[name].append(float(value))
    return {k: sum(v[1:] or v) / max(1, len(v[1:] or v)) for k, v in values.items()}


def siti(path: Path, frames: int = 25, size: str = "1920:1080") -> dict[str, float]:
    """Mean spatial and temporal information (ITU-T P.910 SI/TI) of the first frames, scaled
    to the export's size: how much detail and motion an encoder has to deal with."""
    done = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-i", str(path), "-frames:v", str(frames),
         "-vf", f"scale={size},siti=print_summary=1", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    averages = [
        float(line.split(":")[1])
        for line in done.stderr.splitlines()
        if line.startswith("Average:")
    ]
    return {"si": averages[0], "ti": averages[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--classes", default=",".join(CLASSES))
    parser.add_argument("--clips", type=int, default=None)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    args = parser.parse_args()
    for name in args.classes.split(","):
        footage = CLASSES[name]
        paths = make_clips(footage, args.directory, args.clips, args.seconds)
        preview = args.directory / f"{name}-preview.png"
        at = min(args.seconds / 2, 2.0)
        run_ffmpeg(["-ss", f"{at}", "-i", str(paths[0]), "-frames:v", "1", str(preview)])
        info = probe(paths[0])
        print(f"{name}: {len(paths)} clips, {info['width']}x{info['height']} "
              f"{info['fps']:g} fps, {info['bit_rate'] / 1e6:.1f} Mbit/s, "
              f"preview {preview}")  # fmt: skip


if __name__ == "__main__":
    main()
