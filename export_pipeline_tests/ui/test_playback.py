"""Each output format in a browser, as the app shows it: the published video's URL (presigned,
from S3-compatible storage over loopback) as the `src` of a `<video>` element in headless
Chromium. H.264 and VP9 must load (readyState >= 2, HAVE_CURRENT_DATA) with the export's
duration and frame size. Chromium on Linux has no HEVC decoder of its own (only a platform
one, where the GPU offers it): there the test checks that `canPlayType` says so and that no
picture is shown, which is how the app decides whether to offer `mp4-hevc` (README, Formats).
"""

import pytest

from export_pipeline_tests.conftest import clip
from export_pipeline_tests.e2e.test_pipeline import export

pytestmark = pytest.mark.e2e

# RFC 6381 type strings, as an app would ask `canPlayType` about each format.
MIME = {
    "mp4": 'video/mp4; codecs="avc1.640028, mp4a.40.2"',
    "mp4-hevc": 'video/mp4; codecs="hvc1.1.6.L93.B0, mp4a.40.2"',
    "webm": 'video/webm; codecs="vp09.00.31.08, opus"',
}

LOAD = """async (src) => {
  const video = document.createElement("video");
  video.preload = "auto";
  video.muted = true;
  document.body.appendChild(video);
  const settled = new Promise((resolve) => {
    video.addEventListener("loadeddata", () => resolve("loaded"), { once: true });
    video.addEventListener("error", () => resolve("error"), { once: true });
  });
  video.src = src;
  const outcome = await settled;
  return {
    outcome,
    readyState: video.readyState,
    duration: video.duration,
    width: video.videoWidth,
    height: video.videoHeight,
    error: video.error ? video.error.code : null,
  };
}"""


@pytest.mark.parametrize("name", sorted(MIME))
def test_the_published_video_plays_in_chromium(name, browser, s3_settings, store, instance, cdn):
    settings = s3_settings
    clips = [clip(cdn.url("landscape.mp4"), 1, duration=1.5), clip(cdn.url("portrait.mp4"), 2)]
    request_id, result, _ = export(settings, store, instance, clips, format=name)
    assert result.success, result.all_events
    row = store.get(request_id)

    page = browser.new_page()
    page.set_content("<!doctype html><title>status card</title><body></body>")
    can_play = page.evaluate("(t) => document.createElement('video').canPlayType(t)", MIME[name])
    seen = page.evaluate(LOAD, row["video_url"])

    if name == "mp4-hevc" and can_play == "":
        # What Chromium says it cannot play, it indeed cannot: it refuses the file, or (seen
        # with Chromium 156) plays its AAC track alone, with no picture (videoWidth 0).
        assert seen["outcome"] == "error" or seen["width"] == 0, seen
        return
    assert can_play == "probably"
    assert seen["outcome"] == "loaded" and seen["readyState"] >= 2, seen
    assert seen["duration"] == pytest.approx(row["output_duration_s"], abs=0.1)
    assert (seen["width"], seen["height"]) == (1280, 720)
