"""``python -m linksage.evaluate``: evaluate stored embeddings (see ``linksage.evaluate.offline``)."""

from linksage.evaluate.offline import main

raise SystemExit(main())
