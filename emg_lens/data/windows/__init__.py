"""TinyMyo's windows: the windowing pipeline (`pipeline`), the downstream datasets' thesis
recipe (`downstream`) and the HDF5 window store (`store`); `emg_lens.data.window_build` cuts a
dataset into a store."""
