"""The models built here: IsoNet, the IsoNet paper's fusion baselines and MLP, TinyMyo (and its
published checkpoint format). Each is a `emg_lens.models.base.HookedEncoder` (the MLP a
`HookedBiosignalModel`: it has no attention) that provides every capability of the contract.
"""
