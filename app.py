"""The WSGI and flask target: `gunicorn app:app`, `flask --app app ...`."""

from reporting import create_app

app = create_app()
