"""Every word of the page in English and Russian.

The English text is the key, so the page reads as it is written; `t` returns the Russian one
when the session's language is Russian (from the sidebar switch, the URL, or on a first visit
the browser's language). Messages that come from the library stay as the library words them.
"""

from __future__ import annotations

import streamlit as st

LANGUAGES = {"en": "English", "ru": "Русский"}

RUSSIAN: dict[str, str] = {
    # sidebar
    "Language": "Язык",
    "No collection yet: create one below, then add a folder to it.": (
        "Коллекций пока нет: создайте коллекцию ниже и добавьте в неё папку."
    ),
    "Collection": "Коллекция",
    "New collection": "Новая коллекция",
    "Name": "Название",
    "holidays": "отпуск",
    "Create": "Создать",
    "Rename or delete {name}": "Переименовать или удалить {name}",
    "New name": "Новое название",
    "Rename": "Переименовать",
    "Delete {name} and its index (the photos and videos stay)": (
        "Удалить {name} и её индекс (сами фото и видео останутся)"
    ),
    "Delete": "Удалить",
    "Runtime": "Среда выполнения",
    "Automatic picks ONNX when the model has it, else PyTorch.": (
        "«Автоматически» выбирает ONNX, если он есть у модели, иначе PyTorch."
    ),
    "Automatic": "Автоматически",
    "Results (top-k)": "Результатов (top-k)",
    "Cut off by": "Отсекать по",
    "Confidence": "Уверенности",
    "Cosine": "Косинусу",
    "Minimum confidence": "Минимальная уверенность",
    "The share of unrelated queries (everyday scenes, nonsense, patterns) whose best match "
    "here a result must beat; 0 shows the closest anyway.": (
        "Доля посторонних запросов (бытовые сцены, бессмыслица, узоры), чьё лучшее совпадение "
        "здесь результат должен превзойти; 0 покажет ближайшие в любом случае."
    ),
    "Minimum similarity (cosine)": "Минимальное сходство (косинус)",
    "Results scoring below this are hidden. Each model starts at its own default.": (
        "Результаты с меньшим сходством скрыты. У каждой модели своё значение по умолчанию."
    ),
    "Sort by score": "Сортировка по сходству",
    "Best first": "Сначала лучшие",
    "Worst first": "Сначала худшие",
    "Model": "Модель",
    "{key} — not downloaded": "{key} — не скачана",
    "ImageNet zero-shot {top1} %": "ImageNet без дообучения {top1} %",
    "Class": "Класс",
    "Per image: decoding {decode_ms_per_image:g} ms of CPU, embedding {embed_ms_per_image:g} "
    "ms, storing {store_ms_per_image:g} ms · {items_per_s:g} files/s · CPU {cpu_seconds:g} s "
    "· peak memory {peak_rss_mb:g} MB": (
        "На снимок: декодирование {decode_ms_per_image:g} мс процессора, вложение "
        "{embed_ms_per_image:g} мс, запись {store_ms_per_image:g} мс · {items_per_s:g} файлов/с "
        "· процессор {cpu_seconds:g} с · пик памяти {peak_rss_mb:g} МБ"
    ),
    "Each item has the label it is closest to (imgfinder labels set ...).": (
        "Каждому снимку дана ближайшая к нему метка (imgfinder labels set ...)."
    ),
    "Also mirrored and closer up (steadier, 4× the model's time)": (
        "Ещё в зеркальном отражении и крупнее (устойчивее, в 4 раза дольше)"
    ),
    "The demo model knows only its synthetic world: colours, shapes, sizes, counts and "
    "backgrounds. For your own photos, pick or download a CLIP model.": (
        "Демо-модель знает только свой синтетический мир: цвета, формы, размеры, количество и "
        "фон. Для своих фото выберите или скачайте модель CLIP."
    ),
    "Index": "Индекс",
    "Index|tab": "Индексация",
    "Index parameters": "Параметры индекса",
    "This index has no parameters.": "У этого индекса нет параметров.",
    # search
    "Search": "Поиск",
    "Search by": "Искать по",
    "Text": "Тексту",
    "Image": "Картинке",
    "Show": "Показать",
    "Everything": "Всё",
    "Images": "Фото",
    "Videos": "Видео",
    "Describe what you are looking for, in English or Russian": (
        "Опишите, что ищете, по-русски или по-английски"
    ),
    "Find images like this one (JPEG, PNG, WebP, HEIC or AVIF, up to {mb} MB)": (
        "Найти похожие на эту картинку (JPEG, PNG, WebP, HEIC или AVIF, до {mb} МБ)"
    ),
    "More like {name}": "Похожие на {name}",
    "Back to my query": "Вернуться к моему запросу",
    "More like this picture": "Похожие на эту картинку",
    "Your picture": "Ваша картинка",
    "Show the closest anyway": "Всё равно показать ближайшие",
    "Refine: but …, not …": "Уточнить: но …, не …",
    "But (a text this image or result should also match)": (
        "Но (текст, которому тоже должен соответствовать результат)"
    ),
    "And also": "А ещё",
    "at night · ночью": "ночью · at night",
    "How much it counts": "Насколько это важно",
    "Not (comma-separated)": "Не (через запятую)",
    "circle, blue · круг": "круг, синий · circle",
    "How hard to push away": "Насколько сильно отталкивать",
    "This collection is empty — add a folder in the Index tab.": (
        "Коллекция пуста — добавьте папку на вкладке «Индексация»."
    ),
    "Type a description above, or pick an example": "Введите описание выше или выберите пример",
    "Upload an example image above": "Загрузите образец картинки выше",
    "{hint}; on any result, “More like this” finds its neighbours.": (
        "{hint}; у любого результата кнопка «Похожие» найдёт соседей."
    ),
    "This collection has nothing indexed yet — add a folder in the Index tab.": (
        "В коллекции ещё ничего не проиндексировано — добавьте папку на вкладке «Индексация»."
    ),
    "Nothing here is in that folder and those dates.": "В этой папке и в эти даты ничего нет.",
    "Limit to a folder or dates": "Только папка или даты",
    "Folder": "Папка",
    "All": "Все",
    "Taken between": "Снято между",
    "The photo's EXIF date, else when its file was last changed.": (
        "Дата съёмки из EXIF, а если её нет — когда файл последний раз меняли."
    ),
    "Clear the filters": "Сбросить фильтры",
    "This collection has no {kinds} — show everything instead?": (
        "В этой коллекции нет {kinds} — показать всё?"
    ),
    "images": "фото",
    "videos": "видео",
    "Nothing above {threshold:.2f} — lower the threshold?": (
        "Нет ничего выше {threshold:.2f} — понизить порог?"
    ),
    " The best match scores {best:.2f}.": " Лучшее совпадение: {best:.2f}.",
    "No confident matches: nothing here beats {threshold:.0%} of unrelated queries.": (
        "Уверенных совпадений нет: ничто здесь не превосходит {threshold:.0%} посторонних запросов."
    ),
    "Nothing similar was found.": "Ничего похожего не нашлось.",
    "Create a collection in the sidebar to start.": "Для начала создайте коллекцию слева.",
    # results
    "{results} · encode {encode} · search {search} · render {render}": (
        "{results} · кодирование {encode} · поиск {search} · отрисовка {render}"
    ),
    "cached": "из кэша",
    "{label} {parity} (measured at export)": "{label} {parity} (измерено при экспорте)",
    "(no preview)": "(нет превью)",
    "More like this": "Похожие",
    "Indexed folders": "Проиндексированные папки",
    "Classes to sort the items into": "Классы, по которым раскладывать файлы",
    "Labels, comma-separated (at least two)": "Метки через запятую (не меньше двух)",
    "beach, mountains, city, people, food": "пляж, горы, город, люди, еда",
    "Every item gets the label the model finds nearest; the Search tab can then show one "
    "class only. Leave empty for none.": (
        "Каждый файл получает метку, ближайшую по мнению модели; во вкладке «Поиск» можно "
        "показать только один класс. Оставьте пустым, чтобы классов не было."
    ),
    "Save the classes": "Сохранить классы",
    "under a minute": "меньше минуты",
    "about {minutes} min": "около {minutes} мин",
    "about {hours} h {minutes:02d} min": "около {hours} ч {minutes:02d} мин",
    "Measured on this machine by `make bench` (2 CPU cores): {fp32:g} images/s in fp32, "
    "{int8:g} in int8.": (
        "Измерено на этой машине командой `make bench` (2 ядра): {fp32:g} изображений/с в fp32, "
        "{int8:g} в int8."
    ),
    "Its speed has not been measured on this machine.": (
        "Её скорость на этой машине ещё не измерена."
    ),
    "Indexing this collection's {files} with it takes {time} here.": (
        "Индексация {files} этой коллекции займёт здесь {time}."
    ),
    "{left} of {total} files are not indexed with {model} yet: re-indexing takes {time} here.": (
        "{left} из {total} файлов ещё не проиндексированы моделью {model}: обновление займёт "
        "здесь {time}."
    ),
    "{left} of {total} files are not indexed with {model} yet.": (
        "{left} из {total} файлов ещё не проиндексированы моделью {model}."
    ),
    "Re-index": "Обновить",
    "Embeds only what is new or changed and forgets deleted files.": (
        "Обрабатывает только новое и изменённое и забывает удалённые файлы."
    ),
    "Watch these folders: index new and changed files by themselves": (
        "Следить за этими папками: новые и изменённые файлы индексируются сами"
    ),
    "Watching {folders}": "Слежу за: {folders}",
    "last re-indexed at {time}": "последнее обновление в {time}",
    "{count} changes waiting": "ждут изменений: {count}",
    "Not watching {folder}: {reason}": "Не слежу за {folder}: {reason}",
    "The last re-index failed: {error}": "Последнее обновление не удалось: {error}",
    "Matching moments": "Подходящие моменты",
    "Show {count} more": "Показать ещё {count}",
    "Viewer": "Просмотр",
    "Previous": "Назад",
    "Next": "Вперёд",
    "Download": "Скачать",
    "confidence {confidence:.0%}": "уверенность {confidence:.0%}",
    "score {score:.3f}": "сходство {score:.3f}",
    " · confidence {confidence:.2f}": " · уверенность {confidence:.2f}",
    "Why it matched": "Почему подошло",
    "A heat map of the regions that make this image match: the model is shown the image "
    "hundreds of times with parts hidden, and the parts whose absence lowers the score "
    "light up.": (
        "Тепловая карта областей, из-за которых картинка подошла: модель сотни раз смотрит на "
        "картинку со скрытыми частями, и светятся те части, без которых сходство падает."
    ),
    "Map by": "Карта по",
    "Hiding parts": "Скрытию частей",
    "Gradients (PyTorch)": "Градиентам (PyTorch)",
    "Drawing the map…": "Рисую карту…",
    "Relevance map": "Карта соответствия",
    "Brightest where the match is strongest · {method}{views} · {time}": (
        "Ярче всего там, где совпадение сильнее · {method}{views} · {time}"
    ),
    " ({views} views)": " ({views} просмотров)",
    # indexing and models
    "Folder to add (on this computer)": "Папка для добавления (на этом компьютере)",
    "/home/me/Pictures": "/home/me/Изображения",
    "Only new and changed files are embedded; search keeps working meanwhile.": (
        "Обрабатываются только новые и изменённые файлы; поиск тем временем работает."
    ),
    "Index folder": "Индексировать папку",
    "Scanning": "Сканирование",
    "Embedding": "Векторизация",
    "{phase} {done}/{total}{rate} · ETA {eta}": "{phase} {done}/{total}{rate} · осталось {eta}",
    "Cancel": "Отменить",
    "Indexing {folder} failed: {error}": "Индексация {folder} не удалась: {error}",
    "Indexed {indexed} new files from {folder}; {unchanged} unchanged, {removed} removed, "
    "{skipped} skipped, in {elapsed}.": (
        "Из {folder} проиндексировано новых файлов: {indexed}; без изменений {unchanged}, "
        "удалено {removed}, пропущено {skipped}, за {elapsed}."
    ),
    "Cancelled. {headline} Index again to resume.": (
        "Отменено. {headline} Запустите индексацию снова, чтобы продолжить."
    ),
    "Skipped files": "Пропущенные файлы",
    "Also at: {paths}": "Также здесь: {paths}",
    "file": "файл",
    "reason": "причина",
    "Dismiss": "Закрыть",
    "Model {key} is not available here: {missing}": "Модели {key} здесь нет: {missing}",
    "Downloading {key} failed: {error}": "Скачать {key} не удалось: {error}",
    "Download {key}{size}": "Скачать {key}{size}",
    " (about {mb} MB)": " (около {mb} МБ)",
    "Downloading {file} · {done}/{total}": "Скачивается {file} · {done}/{total}",
}

#: (one, few, many) forms of the counted nouns, English (one, other) as the key
_COUNTED = {
    ("result", "results"): ("результат", "результата", "результатов"),
    ("folder", "folders"): ("папка", "папки", "папок"),
    ("file", "files"): ("файла", "файлов", "файлов"),
    ("matching moment", "matching moments"): (
        "подходящий момент",
        "подходящих момента",
        "подходящих моментов",
    ),
    ("image", "images"): ("фото", "фото", "фото"),
    ("video", "videos"): ("видео", "видео", "видео"),
}


def language() -> str:
    return st.session_state.get("lang", "en")


def t(english: str, **values: object) -> str:
    """`english` (a str.format template) in the session's language, filled with `values`;
    "Index|tab" tells one English word's meanings apart (the page shows "Index")."""
    text = RUSSIAN.get(english, english) if language() == "ru" else english.split("|")[0]
    return text.format(**values) if values else text


def counted(count: int, one: str, other: str) -> str:
    """ "1 result", "2 results"; in Russian with the noun in the form the number asks for."""
    if language() != "ru":
        return f"{count} {one if count == 1 else other}"
    forms = _COUNTED[(one, other)]
    tens, units = count % 100, count % 10
    if units == 1 and tens != 11:
        return f"{count} {forms[0]}"
    if 2 <= units <= 4 and not 12 <= tens <= 14:
        return f"{count} {forms[1]}"
    return f"{count} {forms[2]}"


def duration(seconds: float) -> str:
    """A time to wait as people say it: "under a minute", "about 12 min", "about 2 h 05 min"."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return t("under a minute")
    if minutes < 60:
        return t("about {minutes} min", minutes=minutes)
    return t("about {hours} h {minutes:02d} min", hours=minutes // 60, minutes=minutes % 60)
