"""Caption text: the tokeniser and vocabulary shared by training and serving, and word2vec."""
