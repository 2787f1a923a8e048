"""Looking at a model: the HTML retrieval report and word importance."""
