import json
import logging

from app.observability import JsonFormatter


def test_json_logs_are_one_object_per_line_with_the_request_id():
    record = logging.LogRecord("billops", logging.WARNING, __file__, 1, "replay of %s failed", ("evt_1",), None)
    record.request_id = "req-123"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "replay of evt_1 failed"
    assert parsed["level"] == "WARNING"
    assert parsed["request_id"] == "req-123"
