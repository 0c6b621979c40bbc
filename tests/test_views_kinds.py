"""run_kinds: one fact, checked against the tasks that own it."""

from __future__ import annotations


def test_the_record_files_are_the_tasks_own():
    """run_kinds.RECORDS names the file each task writes; the tasks' constants agree."""
    from numerlab import compare, run_kinds
    from numerlab.tasks import download, export, live, results, stake, status, submit

    assert run_kinds.RECORDS == {
        "live": live.SUBMISSION_RECORD, "stake": stake.STAKE_FILE, "status": status.STATUS_FILE,
        "download": download.DOWNLOAD_FILE, "export": export.EXPORT_FILE,
        "compare": compare.REPORT_HTML, "results": results.RESULTS_FILE,
        "submit": submit.RECORD}
