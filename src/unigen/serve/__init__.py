"""``unigen serve``: the task model over HTTP (:mod:`.app`) with a web page (``static/index.html``)."""
