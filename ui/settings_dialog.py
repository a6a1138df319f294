"""The Settings dialog: edit the settings file with the same checks as the loader.

The dialog edits a copy of the JSON document (OpenPype's key names) and, on Save,
runs :func:`app.settings.validate` on the result. Each problem is shown under the field
it concerns, with its key and fix (the same text a user editing the file by hand gets);
nothing is written while any problem remains. Saving goes through
:func:`app.settings.update_settings`, which re-reads the file, applies only the keys this
dialog owns, validates again and replaces the file atomically, so keys the dialog does
not show (projects, engine tuning, unknown provider keys) are kept as they are.

The dialog never touches the engine or the database: the tray applies the saved
settings (``saved`` signal) off the GUI thread.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.errors import ConfigError
from app.settings import (
    DEFAULT_SITE,
    LOCAL_SITE,
    PROVIDER_OPTIONS,
    Option,
    Settings,
    current_platform,
    update_settings,
    validate,
)
from app.settings.local_id import env_local_id
from app.settings.schema import (
    COMMON_SITE_OPTIONS,
    MACHINE_SITE_KEYS,
    Kind,
    engine_option,
    global_option,
)
from providers.registry import provider_kinds
from ui.icons import app_icon, provider_icon

__all__ = ["SettingsDialog", "SiteEditor", "plain"]

_ERROR_STYLE = "color: #C62828;"
#: Top-level keys the dialog owns (plus engine.workers_per_site and the sites block).
_GLOBAL_KEYS = ("local_id", "publish_site", "remote_site", "retry_cnt", "loop_delay",
                "database_url", "database_name")
_ALIASES = {"publish_site": ("active_site",)}
#: This machine's limits for a site (``sites.<name>.transfers`` / ``bwlimit``), shown for
#: every provider: the per-site concurrency and bandwidth the engine applies live.
_LIMIT_OPTIONS = tuple(sorted((o for o in COMMON_SITE_OPTIONS if o.key in MACHINE_SITE_KEYS),
                              key=lambda o: o.key != "transfers"))
_LIMIT_LABELS = {"transfers": "Transfers at once", "bwlimit": "Bandwidth limit"}


def plain(value: Any) -> Any:
    """A deep, mutable copy of a (possibly read-only) settings document."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return copy.deepcopy(value)


def _error_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setStyleSheet(_ERROR_STYLE)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.hide()
    return label


def _with_error(field: QWidget | QVBoxLayout, error: QLabel) -> QWidget:
    """A field with its (usually hidden) problem line right under it, as one form cell:
    a hidden label in a row of its own would still leave a gap."""
    cell = QWidget()
    box = QVBoxLayout(cell)
    box.setContentsMargins(0, 0, 0, 0)
    box.setSpacing(2)
    if isinstance(field, QWidget):
        box.addWidget(field)
    else:
        box.addLayout(field)
    box.addWidget(error)
    return cell


def _typed(option: Option, text: str) -> Any:
    """A number field's text as a number when it reads as one; anything else stays text
    so the validator reports it with the key and the fix."""
    if option.kind in (Kind.WHOLE, Kind.NUMBER):
        try:
            return int(text)
        except ValueError:
            pass
        if option.kind is Kind.NUMBER:
            try:
                return float(text)
            except ValueError:
                pass
    return text


def _limit_text(value: Any) -> str:
    """A limit as the editor shows it: ``{"upload": 2, "download": 8}`` reads "2:8"."""
    if value is None:
        return ""
    if isinstance(value, Mapping):
        if set(value) == {"upload", "download"}:
            return f"{value['upload']}:{value['download']}"
        return json.dumps(plain(value))
    return str(value)


def _limit_value(option: Option, text: str) -> Any:
    """A limit field's text for the file: a lone whole number of transfers as a number;
    anything else as typed (the validator reports what it cannot read)."""
    if option.kind is Kind.TRANSFERS and text.isdigit():
        return int(text)
    return text


def _problem_text(problems: list[ConfigError]) -> str:
    return "\n".join(f"{p.message}. Fix: {p.fix}" if p.fix else p.message for p in problems)


class _Errors:
    """Error labels keyed by settings key path; a problem goes to the label with the
    longest matching key prefix, or to the dialog's summary when none matches."""

    def __init__(self, summary: QLabel) -> None:
        self.summary = summary
        self.labels: dict[str, QLabel] = {}

    def add(self, key: str, label: QLabel) -> QLabel:
        self.labels[key] = label
        return label

    def owner(self, key: str) -> str | None:
        best = None
        for candidate in self.labels:
            if (key == candidate or key.startswith(candidate + ".")) and (
                best is None or len(candidate) > len(best)
            ):
                best = candidate
        return best

    def show(self, problems: list[ConfigError]) -> dict[str, list[ConfigError]]:
        by_owner: dict[str, list[ConfigError]] = {}
        loose: list[ConfigError] = []
        for problem in problems:
            owner = self.owner(problem.key)
            if owner is None:
                loose.append(problem)
            else:
                by_owner.setdefault(owner, []).append(problem)
        for key, label in self.labels.items():
            found = by_owner.get(key, [])
            label.setText(_problem_text(found))
            label.setVisible(bool(found))
        self.summary.setText(_problem_text(loose))
        self.summary.setVisible(bool(loose))
        return by_owner


class SiteEditor(QDialog):
    """Add or edit one site: name, provider, roots (name -> folder on this platform) and
    the provider's own options. ``check`` validates the whole document with this site
    in it, so the messages are exactly the loader's."""

    def __init__(self, name: str, block: Mapping[str, Any], *, taken: set[str],
                 check: Callable[[str, str | None, dict[str, Any]], list[ConfigError]],
                 platform: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Site {name}" if name else "New site")
        self._original_name = name
        self._taken = taken
        self._check = check
        self._platform = platform
        self._block = plain(block)
        self.result_name = name
        self.result_block: dict[str, Any] = {}

        layout = QVBoxLayout(self)
        form = QFormLayout()
        layout.addLayout(form)
        self.summary = _error_label()
        self.errors = _Errors(self.summary)

        self.name_edit = QLineEdit(name)
        self.name_edit.setPlaceholderText("e.g. studio, gdrive, nas")
        form.addRow("Name", _with_error(self.name_edit, self.errors.add("name", _error_label())))

        self.provider = QComboBox()
        current = str(self._block.get("provider", "local_drive"))
        kinds = provider_kinds()
        for kind in [*kinds, *([current] if current not in kinds else [])]:
            self.provider.addItem(provider_icon(kind), kind, kind)
        self.provider.setCurrentIndex(max(0, self.provider.findData(current)))
        self.provider.currentIndexChanged.connect(self._build_options)
        form.addRow("Provider", _with_error(self.provider,
                                            self.errors.add("provider", _error_label())))

        self.roots = QTableWidget(0, 2)
        self.roots.setHorizontalHeaderLabels(["Root name", f"Folder ({platform})"])
        self.roots.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.roots.verticalHeader().hide()
        self.roots.setMinimumHeight(110)
        for root, value in (self._block.get("root") or {}).items():
            folder = value.get(platform, "") if isinstance(value, Mapping) else str(value)
            self._add_root_row(str(root), folder)
        buttons = QHBoxLayout()
        add_root = QPushButton("Add root")
        add_root.clicked.connect(self._on_add_root)
        remove_root = QPushButton("Remove root")
        remove_root.clicked.connect(self._on_remove_root)
        buttons.addWidget(add_root)
        buttons.addWidget(remove_root)
        buttons.addStretch(1)
        roots_box = QVBoxLayout()
        roots_box.addWidget(self.roots)
        roots_box.addLayout(buttons)
        form.addRow("Roots", _with_error(roots_box, self.errors.add("root", _error_label())))

        # This machine's limits for the site (kept when the provider changes).
        self.limit_widgets: dict[str, QLineEdit] = {}
        for option in _LIMIT_OPTIONS:
            edit = QLineEdit(_limit_text(self._block.get(option.key)))
            edit.setToolTip(option.help)
            edit.setPlaceholderText("engine.workers_per_site" if option.key == "transfers"
                                    else "off")
            self.limit_widgets[option.key] = edit
            form.addRow(_LIMIT_LABELS[option.key],
                        _with_error(edit, self.errors.add(f"limit.{option.key}", _error_label())))

        self.options_form = QFormLayout()
        layout.addLayout(self.options_form)
        self.option_widgets: dict[str, QWidget] = {}
        self._build_options()

        layout.addWidget(self.summary)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                               QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.try_accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)

    # -- roots --------------------------------------------------------------------------------

    def _add_root_row(self, root: str, folder: str) -> None:
        row = self.roots.rowCount()
        self.roots.insertRow(row)
        self.roots.setItem(row, 0, QTableWidgetItem(root))
        self.roots.setItem(row, 1, QTableWidgetItem(folder))

    def _on_add_root(self) -> None:
        self._add_root_row("work" if self.roots.rowCount() == 0 else "", "")
        self.roots.editItem(self.roots.item(self.roots.rowCount() - 1, 1))

    def _on_remove_root(self) -> None:
        row = self.roots.currentRow()
        if row >= 0:
            self.roots.removeRow(row)

    def set_roots(self, roots: Mapping[str, str]) -> None:
        self.roots.setRowCount(0)
        for root, folder in roots.items():
            self._add_root_row(root, folder)

    # -- provider options -----------------------------------------------------------------------

    def _build_options(self) -> None:
        while self.options_form.rowCount():
            self.options_form.removeRow(0)
        self.option_widgets.clear()
        for label in [k for k in self.errors.labels if k.startswith("option.")]:
            del self.errors.labels[label]
        for option in PROVIDER_OPTIONS.get(self.provider.currentData(), ()):
            widget = self._option_widget(option, self._block.get(option.key))
            widget.setToolTip(option.help)
            self.option_widgets[option.key] = widget
            error = self.errors.add(f"option.{option.key}", _error_label())
            self.options_form.addRow(option.key, _with_error(widget, error))

    def _option_widget(self, option: Option, value: Any) -> QWidget:
        if option.kind is Kind.BOOL:
            box = QCheckBox(option.help)
            box.setChecked(bool(option.default if value is None else value))
            return box
        edit = QLineEdit()
        if isinstance(value, Mapping):  # per-platform value: edit this platform's entry
            value = value.get(self._platform, "")
        edit.setText("" if value is None else str(value))
        edit.setPlaceholderText(option.help)
        if option.secret:
            edit.setEchoMode(QLineEdit.EchoMode.Password)
        return edit

    # -- result --------------------------------------------------------------------------------

    def block(self) -> dict[str, Any]:
        """The site block as edited; keys this editor does not show are kept."""
        block = plain(self._block)
        provider = self.provider.currentData()
        if provider != block.get("provider"):
            # Options of the previous provider would be unknown keys for the new one.
            for option in PROVIDER_OPTIONS.get(str(block.get("provider")), ()):
                block.pop(option.key, None)
        block["provider"] = provider
        old_roots = self._block.get("root") if isinstance(self._block.get("root"), Mapping) else {}
        roots: dict[str, Any] = {}
        for row in range(self.roots.rowCount()):
            name = (self.roots.item(row, 0).text() if self.roots.item(row, 0) else "").strip()
            folder = (self.roots.item(row, 1).text() if self.roots.item(row, 1) else "").strip()
            if not name and not folder:
                continue
            previous = old_roots.get(name)
            if isinstance(previous, Mapping):  # keep the other platforms' folders
                roots[name] = {**previous, self._platform: folder}
            else:
                roots[name] = folder
        block["root"] = roots
        for option in _LIMIT_OPTIONS:
            text = self.limit_widgets[option.key].text().strip()
            previous = self._block.get(option.key)
            if text == _limit_text(previous):
                continue  # unchanged: kept exactly as the file has it
            if text:
                block[option.key] = _limit_value(option, text)
            else:
                block.pop(option.key, None)
        for option in PROVIDER_OPTIONS.get(provider, ()):
            widget = self.option_widgets[option.key]
            if isinstance(widget, QCheckBox):
                if widget.isChecked() != bool(option.default) or option.key in block:
                    block[option.key] = widget.isChecked()
                continue
            text = widget.text().strip() if isinstance(widget, QLineEdit) else ""
            previous = self._block.get(option.key)
            if not text:
                if isinstance(previous, Mapping):
                    block[option.key] = {**previous, self._platform: ""}
                else:
                    block.pop(option.key, None)
            elif isinstance(previous, Mapping):
                block[option.key] = {**previous, self._platform: text}
            else:
                block[option.key] = _typed(option, text)
        return block

    def try_accept(self) -> bool:
        """Check name and block; show problems next to their fields, or accept."""
        name = self.name_edit.text().strip()
        problems: list[ConfigError] = []
        if not name:
            problems.append(ConfigError("name: is empty", "give the site a name, e.g. 'nas'",
                                        key="name"))
        elif name != self._original_name and name in self._taken:
            problems.append(ConfigError(f"name: a site {name!r} exists already",
                                        "choose another name, or edit that site", key="name"))
        block = self.block()
        if not problems:
            problems = self._local_keys(name, self._check(name, self._original_name or None, block))
        self.errors.show(problems)
        if problems:
            return False
        self.result_name, self.result_block = name, block
        self.accept()
        return True

    def _local_keys(self, name: str, problems: list[ConfigError]) -> list[ConfigError]:
        """Problems of this site, re-keyed to the editor's fields; others are dropped
        (the main dialog reports them)."""
        prefix = f"sites.{name}"
        mine = []
        for problem in problems:
            if problem.key == prefix:
                key = "name"
            elif problem.key.startswith(prefix + "."):
                first = problem.key[len(prefix) + 1:].split(".", 1)[0]
                key = (first if first in ("provider", "root") else f"limit.{first}"
                       if first in MACHINE_SITE_KEYS else f"option.{first}")
            else:
                continue
            mine.append(ConfigError(problem.message, problem.fix, key=key))
        return mine


class SettingsDialog(QDialog):
    """Edit this machine's settings; emits ``saved(Settings)`` after a successful save."""

    saved = Signal(object)

    def __init__(self, settings: Settings, parent: QWidget | None = None, *,
                 platform: str | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("SiteSync Settings")
        self.setWindowIcon(app_icon())
        self.setMinimumWidth(640)
        self._path = settings.path
        self._platform = platform or current_platform()
        self._raw = plain(settings.raw)
        self._sites: dict[str, dict[str, Any]] = plain(self._raw.get("sites") or {})
        self.saved_settings: Settings | None = None

        layout = QVBoxLayout(self)
        self.summary = _error_label()
        self.errors = _Errors(self.summary)
        tabs = QTabWidget()
        layout.addWidget(tabs)
        tabs.addTab(self._general_tab(), "General")
        tabs.addTab(self._sites_tab(), "Sites")
        tabs.addTab(self._database_tab(), "Database")
        self.tabs = tabs
        layout.addWidget(self.summary)
        note = QLabel(f"Settings file: {self._path}")
        note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        note.setStyleSheet("color: palette(mid);")
        layout.addWidget(note)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Save |
                               QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.save)
        box.rejected.connect(self.reject)
        self.save_button = box.button(QDialogButtonBox.StandardButton.Save)
        layout.addWidget(box)

    # -- tabs -----------------------------------------------------------------------------------

    def _row(self, form: QFormLayout, key: str, label: str, widget: QWidget, help_text: str) -> None:
        widget.setToolTip(help_text)
        form.addRow(label, _with_error(widget, self.errors.add(key, _error_label())))

    def _general_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        raw = self._raw
        self.local_id = QLineEdit(str(raw.get("local_id") or ""))
        override = env_local_id()
        if override:
            self.local_id.setText(override)
            self.local_id.setEnabled(False)
            self.local_id.setToolTip("Set by SITESYNC_LOCAL_ID in the environment")
        self._row(form, "local_id", "This machine (local_id)", self.local_id,
                  global_option("local_id").help)
        self.publish_site = self._site_combo(raw.get("publish_site", raw.get("active_site")))
        self._row(form, "publish_site", "Publish site", self.publish_site,
                  global_option("publish_site").help)
        self.remote_site = self._site_combo(raw.get("remote_site"))
        self._row(form, "remote_site", "Remote site", self.remote_site,
                  global_option("remote_site").help)
        self.retry_cnt = self._spin(global_option("retry_cnt"), raw.get("retry_cnt"))
        self._row(form, "retry_cnt", "Tries before Failed", self.retry_cnt,
                  global_option("retry_cnt").help)
        self.loop_delay = self._spin(global_option("loop_delay"), raw.get("loop_delay"), " s")
        self._row(form, "loop_delay", "Full check every", self.loop_delay,
                  global_option("loop_delay").help)
        engine = raw.get("engine") if isinstance(raw.get("engine"), Mapping) else {}
        self.workers = self._spin(engine_option("workers_per_site"), engine.get("workers_per_site"))
        self._row(form, "engine.workers_per_site", "Parallel transfers per site", self.workers,
                  engine_option("workers_per_site").help)
        return page

    def _database_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.database_url = QLineEdit(str(self._raw.get("database_url") or ""))
        self.database_url.setPlaceholderText("empty = the embedded database on this machine")
        self._row(form, "database_url", "Database URL", self.database_url,
                  global_option("database_url").help)
        self.database_name = QLineEdit(str(self._raw.get("database_name") or "avalon"))
        self._row(form, "database_name", "Database name", self.database_name,
                  global_option("database_name").help)
        return page

    def _sites_tab(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        self.sites_table = QTableWidget(0, 5)
        self.sites_table.setHorizontalHeaderLabels(["Site", "Provider", "Roots", "Limits",
                                                    "Problem"])
        self.sites_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.sites_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.sites_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.sites_table.verticalHeader().hide()
        header = self.sites_table.horizontalHeader()
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.sites_table.doubleClicked.connect(self._on_edit_site)
        layout.addWidget(self.sites_table)
        buttons = QHBoxLayout()
        for text, slot in (("Add…", self._on_add_site), ("Edit…", self._on_edit_site),
                           ("Remove", self._on_remove_site)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        layout.addWidget(self.errors.add("sites", _error_label()))
        self._fill_sites()
        return page

    def _site_combo(self, value: object) -> QComboBox:
        combo = QComboBox()
        combo.setEditable(True)
        names = [LOCAL_SITE, DEFAULT_SITE, *sorted(n for n in self._sites
                                                   if n not in (LOCAL_SITE, DEFAULT_SITE))]
        combo.addItems(names)
        combo.setCurrentText("" if value is None else str(value))
        return combo

    @staticmethod
    def _spin(option: Option, value: object, suffix: str = "") -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(int(option.minimum or 0), int(option.maximum or 2**31 - 1))
        spin.setSuffix(suffix)
        try:
            spin.setValue(int(value) if value is not None else int(option.default))
        except (TypeError, ValueError):
            spin.setValue(int(option.default))  # the file's bad value is reported on save
        return spin

    # -- sites ----------------------------------------------------------------------------------

    def _fill_sites(self, problems: Mapping[str, list[ConfigError]] | None = None) -> None:
        table = self.sites_table
        table.setRowCount(0)
        for name, block in self._sites.items():
            row = table.rowCount()
            table.insertRow(row)
            provider = str(block.get("provider", "local_drive")) if isinstance(block, Mapping) else "?"
            roots = block.get("root") if isinstance(block, Mapping) else None
            roots_text = ", ".join(
                f"{k}: {v.get(self._platform, '') if isinstance(v, Mapping) else v}"
                for k, v in roots.items()) if isinstance(roots, Mapping) else ""
            item = QTableWidgetItem(provider_icon(provider, name), name)
            item.setData(Qt.ItemDataRole.UserRole, name)
            table.setItem(row, 0, item)
            table.setItem(row, 1, QTableWidgetItem(provider))
            table.setItem(row, 2, QTableWidgetItem(roots_text))
            limits = [f"{_LIMIT_LABELS[o.key].lower()} {_limit_text(block.get(o.key))}"
                      for o in _LIMIT_OPTIONS
                      if isinstance(block, Mapping) and block.get(o.key) not in (None, "")]
            table.setItem(row, 3, QTableWidgetItem(", ".join(limits)))
            found = (problems or {}).get(f"sites.{name}", [])
            problem = QTableWidgetItem(_problem_text(found))
            problem.setForeground(Qt.GlobalColor.red)
            problem.setToolTip(_problem_text(found))
            table.setItem(row, 4, problem)
        table.resizeColumnsToContents()
        table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        for combo in (getattr(self, "publish_site", None), getattr(self, "remote_site", None)):
            if combo is not None:
                text = combo.currentText()
                combo.clear()
                combo.addItems([LOCAL_SITE, DEFAULT_SITE, *sorted(
                    n for n in self._sites if n not in (LOCAL_SITE, DEFAULT_SITE))])
                combo.setCurrentText(text)

    def selected_site(self) -> str | None:
        row = self.sites_table.currentRow()
        item = self.sites_table.item(row, 0) if row >= 0 else None
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def site_editor(self, name: str = "") -> SiteEditor:
        """The editor for site ``name`` ("" = a new one); callers exec() it (tests drive
        it directly)."""
        block = self._sites.get(name, {"provider": "local_drive", "root": {"work": ""}})
        return SiteEditor(name, block, taken=set(self._sites), check=self._check_site,
                          platform=self._platform, parent=self)

    def apply_site(self, editor: SiteEditor) -> None:
        """Take an accepted editor's result into the dialog (renames keep the order)."""
        old, new = editor._original_name, editor.result_name
        sites = {}
        for name, block in self._sites.items():
            sites[new if name == old else name] = editor.result_block if name == old else block
        if not old:
            sites[new] = editor.result_block
        self._sites = sites
        self._fill_sites()

    def remove_site(self, name: str) -> None:
        self._sites.pop(name, None)
        self._fill_sites()

    def _on_add_site(self) -> None:
        editor = self.site_editor()
        if editor.exec() == QDialog.DialogCode.Accepted:
            self.apply_site(editor)

    def _on_edit_site(self, *_args: object) -> None:
        name = self.selected_site()
        if name is None:
            return
        editor = self.site_editor(name)
        if editor.exec() == QDialog.DialogCode.Accepted:
            self.apply_site(editor)

    def _on_remove_site(self) -> None:
        name = self.selected_site()
        if name is None:
            return
        answer = QMessageBox.question(self, "Remove site", f"Remove site {name!r} from the "
                                      "settings? Files already synced there stay where they are.")
        if answer == QMessageBox.StandardButton.Yes:
            self.remove_site(name)

    def _check_site(self, name: str, original: str | None, block: dict[str, Any]) -> list[ConfigError]:
        sites = {k: v for k, v in self._sites.items() if k != original}
        sites[name] = block
        raw = self.document()
        raw["sites"] = sites
        return validate(raw, platform=self._platform, local_id=env_local_id())

    # -- save ------------------------------------------------------------------------------------

    def _edit(self, raw: dict[str, Any]) -> None:
        """Write the dialog's values into a document (the file's current one on save)."""
        values: dict[str, Any] = {
            "publish_site": self.publish_site.currentText().strip(),
            "remote_site": self.remote_site.currentText().strip(),
            "retry_cnt": self.retry_cnt.value(),
            "loop_delay": self.loop_delay.value(),
            "database_url": self.database_url.text().strip(),
            "database_name": self.database_name.text().strip(),
        }
        if self.local_id.isEnabled():
            values["local_id"] = self.local_id.text().strip()
        for key, value in values.items():
            for alias in _ALIASES.get(key, ()):
                raw.pop(alias, None)
            raw[key] = value
        engine = raw.get("engine")
        if not isinstance(engine, dict):
            engine = raw["engine"] = {}
        engine["workers_per_site"] = self.workers.value()
        raw["sites"] = plain(self._sites)

    def document(self) -> dict[str, Any]:
        """The settings document as it would be saved."""
        raw = plain(self._raw)
        self._edit(raw)
        return raw

    def check(self) -> list[ConfigError]:
        """Validate the edited document; show each problem next to its field."""
        problems = validate(self.document(), platform=self._platform, local_id=env_local_id())
        self.show_problems(problems)
        return problems

    def show_problems(self, problems: list[ConfigError]) -> None:
        by_owner = self.errors.show(problems)
        site_problems: dict[str, list[ConfigError]] = {}
        for problem in by_owner.get("sites", []):
            parts = problem.key.split(".")
            site_problems.setdefault(".".join(parts[:2]), []).append(problem)
        self._fill_sites(site_problems)
        for index in range(self.tabs.count()):
            page = self.tabs.widget(index)
            bad = any(by_owner.get(key) and page.isAncestorOf(label)
                      for key, label in self.errors.labels.items())
            self.tabs.setTabText(index, self.tabs.tabText(index).rstrip(" ⚠") + (" ⚠" if bad else ""))

    def save(self) -> Settings | None:
        """Validate, then write the file atomically; returns the new Settings (also
        emitted as ``saved``) or None when problems are shown."""
        if self.check():
            return None
        try:
            settings = update_settings(self._edit, self._path, platform=self._platform)
        except ConfigError as exc:
            problems = list(getattr(exc, "problems", ())) or [exc]
            self.show_problems(problems)
            return None
        self.saved_settings = settings
        self.saved.emit(settings)
        self.accept()
        return settings
