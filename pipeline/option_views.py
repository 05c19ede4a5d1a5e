"""Beam's ``PipelineOptions.view_as``, made once per options object and view class instead
of at every call.

Each ``view_as`` builds a new options object, and so an argparse parser of every option
that class knows, and parses the flags again; building a job calls it about a thousand
times (type checks, transforms, translation). In a chunked command it was 4.6 s of the
launcher's CPU for 4 jobs, a quarter of their time outside the workers (cProfile, 4,355
calls). A view is live (Beam: "modifications of values in any view-object will apply to
current object and other view-objects": every view of an object shares its
``_all_options``), so handing out the same view again answers the same; a view is made
anew when the object's ``_all_options`` was replaced. Installed in the launcher only
(``pipeline.run``): worker processes call it a few times per job."""

from __future__ import annotations

import weakref

from apache_beam.options.pipeline_options import PipelineOptions

_beams_view_as = PipelineOptions.view_as
_views: "weakref.WeakKeyDictionary[PipelineOptions, dict]" = weakref.WeakKeyDictionary()


def remembered_view_as(options: PipelineOptions, cls):
    """``options.view_as(cls)``, the same view each time while it shares the object's values."""
    views = _views.get(options)
    if views is None:
        views = _views[options] = {}
    view = views.get(cls)
    if view is None or view._all_options is not options._all_options:
        view = views[cls] = _beams_view_as(options, cls)
    return view


def remember_option_views() -> None:
    """Install it for this process. Idempotent."""
    PipelineOptions.view_as = remembered_view_as
