"""Problems: datasets and data generators. Import a concrete problem through the registry."""
