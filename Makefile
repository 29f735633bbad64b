# The two commands of the README. Each sets itself up on a fresh clone.
.PHONY: run test install install-test

run: install            ## install, then run the bot (the local web chat unless a Discord/Slack token is set)
	.venv/bin/paperbot run

test: install-test      ## install with the test tools, then run the whole test suite
	.venv/bin/python -m pytest -q

install:                ## the core, and all three chat surfaces (Discord, Slack, the web chat)
	scripts/bootstrap.sh discord,slack,web

install-test:           ## pinned to constraints.txt, so a fresh clone installs what was tested
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt scripts/bootstrap.sh test,server
	scripts/install_test_tools.sh
