"""One module per file format, its reader and writer together: NinaPro DB2, DB5, DB6/DB7 and
DB8 (MATLAB, with their shared reading in the private ``_matlab``), the HD-sEMG 65-gesture
database, emg2pose, EMG-EPN-612 and UCI EMG Data for Gestures. Each defines the
`emg_lens.data.reader.DatasetReader` its registry entry names."""
