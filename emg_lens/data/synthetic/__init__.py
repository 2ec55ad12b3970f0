"""Synthetic data with planted structure, so that a method can be checked against the truth:
sEMG x ACC interaction gestures shaped like NinaPro DB2 (`emg_acc`), 10-20 EEG whose
interaction classes need two scalp regions (`eeg`), HD-sEMG grids (`hdsemg`), TinyMyo's
downstream datasets (`downstream`) and sEMG windows (`windows`); each can be written in its
real dataset's file layout where one exists (``emg-lens synth``)."""
