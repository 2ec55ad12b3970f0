"""Figures of the inspection tables, one function per table, each returning a matplotlib Figure
(the CLI saves PNG and SVG), and an optional CircuitsVis export.

``heads``: what the heads do (attention flow, the weight circuits, head importance, attention
mass against causal effect, direct attribution); ``layers``: what changes layer by layer
(distribution shift, patching, probes with their control task, interchange accuracy with its
interval); ``patterns``: one layer's pattern, token by token (`plot_pattern`, and
`to_circuitsvis`, an interactive CircuitsVis view, ``pip install circuitsvis``;
`attention_view_record` what ``report.html`` draws).
``style`` holds what they share (palette, column checks, cell annotations). `emg_lens.inspect`
names the figures of the tables with its analyses."""
