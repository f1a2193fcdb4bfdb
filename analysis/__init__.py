"""Tables and figures of the paper as pure functions of run records (never imports training code)."""
