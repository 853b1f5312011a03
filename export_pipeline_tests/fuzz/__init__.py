"""Fuzzing: atheris targets for the pure parsers and argv builders, and a mutation corpus of
clip files run through probe and a one-segment render.

Targets (each `python -m export_pipeline_tests.fuzz.<target> [libFuzzer flags] [corpus dirs]`):

- `fuzz_request`: `intake.spec.parse_request` and the row reader (`domain.values.decode_json`,
  `for_display`);
- `fuzz_probe_json`: ffprobe JSON -> `MediaInfo` (`media.probe.parse_probe`);
- `fuzz_argv`: the FFmpeg/FFprobe argv builders and `encode_settings` (`media`).

`test_fuzz_runs.py` runs each target for a bounded time in CI (it needs atheris);
`test_fuzz_regressions.py` replays the committed seeds and the findings as plain tests, which
need no atheris: the targets read their bytes through `provider.py` where it is missing, as
atheris would (`test_provider.py`). `test_clip_mutants.py` is the clip-file mutation corpus.
"""
