"""Problems that classify a whole sequence (a "video"): the class is emitted at the last, masked step."""
