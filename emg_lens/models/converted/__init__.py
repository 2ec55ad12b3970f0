"""Models rebuilt here with their weights in TransformerLens shapes: a user's
`nn.TransformerEncoder` (`torch_encoder`) and braindecode's transformers (`braindecode`), each
checked against its source on a probe input (`conversion.check_faithful`)."""
