"""Data: what each dataset is (`emg_lens.data.registry`, which imports neither numpy nor
torch, so the command line reads its names while ``--help`` starts), data sources and the
preprocessing cache (`datasets`, `cache`, `preprocess`), and three wings: ``formats/`` (one
module per file format, reader and writer together), ``synthetic/`` (the generators with
planted structure) and ``windows/`` (TinyMyo's window store and its pipeline). Every reader
returns a `emg_lens.data.recording.Recording`."""
