"""Layers built from the operators (ops/) and used by the model families (models/); they know no file format.

  rwkv2:  RWKV-v2's token shift, time-mix (WKV or TimeX), channel-mix and Head-QK copy head
  rwkv4:  RWKV-4's time-mix (WKV) and channel-mix, with one token-shift mix per projection
  init:   RWKV_Init, the orthogonal initialisation shared by the RWKV families
  hgrn2:  HGRN2's token mixer (the gated outer-product recurrence, ops.gla)
  mru:    mru-lm's Matrix Recurrent Unit (ops.mru_scan), causal attention with xPos and its MLP
  conv:   ShortConvolution, a causal depthwise convolution with a cache (ops.depthwise_conv1d)
  mlp:    feed-forward blocks shared by the families
  norms:  normalisation layers shared by the families
"""
