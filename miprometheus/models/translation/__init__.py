"""Translation models: a recurrent encoder-decoder with attention and a Transformer, greedy and beam decoding."""
