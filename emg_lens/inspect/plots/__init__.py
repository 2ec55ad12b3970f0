"""Figures of the inspection tables, one function per table, each returning a matplotlib Figure:
``heads`` (what the heads do), ``layers`` (what changes layer by layer: shift, patching,
probes, interchange), ``patterns`` (one layer's pattern, and `to_circuitsvis`, an interactive
CircuitsVis view; `attention_view_record`, what ``report.html`` draws); ``style`` holds what
they share."""
