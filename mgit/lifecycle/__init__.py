"""The model lifecycle: tests over the lineage (and bisect on their results).

Modules: ``notes`` (the ``refs/tests`` notes: small JSON files in notes commits, written by
compare-and-swap, merged as a union; low in the import ranks so that :mod:`mgit.remote` can
carry them), ``specs`` (test specs, pass expressions, ``--max-drop`` rules, judging a run:
pure), ``process`` (running one command on one exported version), ``testing`` (storing specs
and results, which tests apply to which versions, running one test with caching: the
interface ``bisect`` uses), ``runner`` (``test run``: many versions, several at a time),
``bisect``. This package imports none of them: importing ``mgit.lifecycle.notes`` does not
load the runner.
"""
