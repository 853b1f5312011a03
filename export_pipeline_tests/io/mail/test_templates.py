"""Email templates and what they are given (issue 23): the package's render every kind;
values are escaped in HTML and only there; the failure email says what went wrong and
what to do from the cause; an operator's directory replaces some or all files and is checked before use."""

from datetime import UTC, datetime, timedelta

import pytest

from export_pipeline.domain.failures import CAUSES, FailureCause, what_to_do
from export_pipeline.io.mail import KINDS, Templates, email_values
from export_pipeline.io.mail.content import (
    SAMPLE_NOW,
    SAMPLE_ROW,
    duration_text,
    moment_text,
    time_left_text,
)
from export_pipeline.io.mail.templates import PACKAGE_DIR


def render(kind, templates=None, **row):
    values = email_values(kind, {**SAMPLE_ROW, **row}, SAMPLE_NOW)
    return (templates or Templates()).render(kind, values)


def test_the_package_ships_a_text_and_an_html_file_per_kind():
    assert sorted(p.name for p in PACKAGE_DIR.iterdir()) == sorted(
        f"{kind}.{ext}" for kind in KINDS for ext in ("txt", "html")
    )
    Templates().check()


def test_the_completion_email_has_the_link_poster_length_size_and_kept_until():
    rendered = render("completion")
    assert rendered.subject == "Your video is ready"
    for part in (rendered.text, rendered.html):
        assert "https://storage.example/videos/exp-42.mp4?X-Amz-Signature=sample" in part
        assert "https://storage.example/videos/exp-42.jpg?X-Amz-Signature=sample" in part
        assert "1:05" in part and "12.3 MB" in part
        assert "Monday 23 November 2026, 10:32 UTC" in part
    assert '<img src="https://storage.example/videos/exp-42.jpg' in rendered.html
    without_poster = render("completion", poster_url=None)
    assert "Poster" not in without_poster.text and "<img" not in without_poster.html


def test_values_are_escaped_in_html_and_only_there():
    hostile = '<script>alert("x")</script> & "quotes"'
    rendered = render("completion", project_id=hostile, video_url='https://v.example/a?x=1&y="2"')
    assert hostile in rendered.text and 'https://v.example/a?x=1&y="2"' in rendered.text
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;quotes&#34;" in rendered.html
    assert 'href="https://v.example/a?x=1&amp;y=&#34;2&#34;"' in rendered.html


@pytest.mark.parametrize(
    ("cause", "advice"),
    [
        ("expired_clip_url", "Regenerate the clip named above in your project, then export again."),
        ("invalid_clip_file", "Regenerate or upload the clip named above again"),
        ("clip_download", "export again in a few minutes"),
        ("storage", "delete old exports first"),
        ("ffmpeg", "contact support with the export number"),
        (None, "contact support with the export number"),  # a row without a cause: other
    ],
)
def test_the_failure_email_says_what_went_wrong_and_what_to_do(cause, advice):
    rendered = render("failure", status="failed", error_cause=cause, run_id="r1")
    assert rendered.subject == "Your video could not be exported"
    for part in (rendered.text, rendered.html):
        assert "clip 3 (scene 7): its source URL has expired" in part
        assert advice in part


def test_every_cause_has_something_to_do():
    assert all(what_to_do(cause) for cause in CAUSES)
    assert what_to_do("no such cause") == what_to_do(FailureCause.OTHER)


def test_the_expiring_email_says_when_and_how_long_is_left():
    rendered = render("expiring")
    assert rendered.subject == "Your video will be deleted on 23 November 2026"
    assert "(2 days from now)" in rendered.text and "(2 days from now)" in rendered.html


def test_an_operator_directory_replaces_some_files_and_the_package_fills_in(tmp_path):
    (tmp_path / "completion.txt").write_text(
        "Subject: {{ export_id }} is done\n\nGet it at {{ video_url }} (size {{ size }}).\n"
    )
    (tmp_path / "failure.html").write_text("<p>{{ error_message }}</p>")
    templates = Templates(tmp_path)
    templates.check()
    rendered = render("completion", templates)
    assert rendered.subject == "exp-42 is done"
    assert rendered.text == (
        "Get it at https://storage.example/videos/exp-42.mp4?X-Amz-Signature=sample "
        "(size 12.3 MB).\n"
    )
    assert rendered.html == render("completion").html.replace(  # the package's
        "<title>Your video is ready</title>", "<title>exp-42 is done</title>"
    )
    assert render("failure", templates, status="failed").html.startswith("<p>downloaded_clips")


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("completion.txt", "Subject: hi\n\n{{ video_link }}\n", "video_link"),
        ("expiring.txt", "Your video\n", "must start with a 'Subject: ...' line"),
        ("failure.txt", "Subject:  \n\nbody\n", "empty subject"),
        ("completion.html", "{{ ''.__class__.__mro__ }}", "SecurityError"),
        ("completion.html", "{% if %}", "TemplateSyntaxError"),
    ],
)
def test_a_broken_operator_template_is_found_before_any_email(tmp_path, name, content, said):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match="email template") as info:
        Templates(tmp_path).check()
    assert said in str(info.value) and str(tmp_path) in str(info.value)


def test_a_templates_directory_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Templates(tmp_path / "missing")


def test_a_value_cannot_add_a_header_through_the_subject(tmp_path):
    from export_pipeline.io.mail import compose

    (tmp_path / "completion.txt").write_text("Subject: Done: {{ project_id }}\n\nbody\n")
    rendered = render("completion", Templates(tmp_path), project_id="p\r\nBcc: x@example.com")
    assert rendered.subject == "Done: p"  # one line: the rest went to the body
    message = compose(rendered, sender="a@example.com", to="b@example.com", reply_to=None,
                      delivery="exp-42:complete:-", request_id=42, date=SAMPLE_NOW)  # fmt: skip
    assert message["Bcc"] is None and message["Subject"] == "Done: p"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, None), (0.4, "0:00"), (12.5, "0:13"), (65.2, "1:05"), (3723, "1:02:03")],
)
def test_duration_text(seconds, shown):
    assert duration_text(seconds) == shown


def test_time_left_and_moments():
    now = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    assert time_left_text(now + timedelta(days=2, hours=3), now) == "2 days"
    assert time_left_text(now + timedelta(hours=30), now) == "1 day"
    assert time_left_text(now + timedelta(hours=5, minutes=59), now) == "5 hours"
    assert time_left_text(now + timedelta(minutes=5), now) == "less than an hour"
    assert time_left_text(now - timedelta(minutes=5), now) is None
    assert moment_text(datetime(2026, 11, 23, 10, 32)) == "Monday 23 November 2026, 10:32 UTC"
