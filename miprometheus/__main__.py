from miprometheus.cli import main

raise SystemExit(main())
