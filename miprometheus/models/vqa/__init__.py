"""Visual question answering models: CNN+LSTM, SAN, Relational Network, MAC and S-MAC."""
