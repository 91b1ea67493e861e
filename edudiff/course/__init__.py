"""The course layer: what serves the notebooks and the instructors, built on everything below.

* :mod:`~edudiff.course.plots`: the notebooks' figures and sliders.
* :mod:`~edudiff.course.checks`: what check cells use (``check_close``, ``references_blocked``, ``check_own_work``).
* :mod:`~edudiff.course.homework`: nbgrader-style exercises: student versions and grading
  (``python -m edudiff homework``).
"""
