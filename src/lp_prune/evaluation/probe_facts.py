"""The probe's facts and phrasings in the seven languages (lp_prune.evaluation.probe builds the items).

Every multilingual entry is one string "ar|de|en|es|ru|sw|zh" (the order of lp_prune.languages),
read into {language: text} by `term`. Names are meant to be the usual forms of each language's
press and encyclopaedias, written by the project and not checked by native speakers of every
language; no articles where the templates put them into a sentence. The templates are written so
that the inserted words keep the form they have in the table (nominative, no agreement to make),
with two exceptions: Russian puts a country into the genitive after "столицей" (RU_GENITIVE), and
Spanish writes "u" instead of "o" before a word that starts with the sound o (probe.join_options).

Only facts that do not depend on the language they are asked in: capitals, continents, days and
months in order, arithmetic, and which of four animals is the largest / which period the longest.
Russia (two continents) has no continent item, Mexico (its capital's name differs too much between
the languages) no capital item; Turkey (German names it with an article) and South Africa (three
capitals, and "Africa" in its name) are left out.
"""

from __future__ import annotations

from lp_prune.languages import LANGUAGES

Term = dict[str, str]  # {language: text}


def term(row: str) -> Term:
    parts = row.split("|")
    if len(parts) != len(LANGUAGES) or not all(part.strip() == part and part for part in parts):
        raise ValueError(f"probe fact '{row}' needs {len(LANGUAGES)} non-empty parts ({', '.join(LANGUAGES)})")
    return dict(zip(LANGUAGES, parts, strict=True))


# --- geography ----------------------------------------------------------------------------------------

CONTINENTS: dict[str, Term] = {
    key: term(row)
    for key, row in {
        "africa": "أفريقيا|Afrika|Africa|África|Африка|Afrika|非洲",
        "asia": "آسيا|Asien|Asia|Asia|Азия|Asia|亚洲",
        "europe": "أوروبا|Europa|Europe|Europa|Европа|Ulaya|欧洲",
        "north_america": "أمريكا الشمالية|Nordamerika|North America|América del Norte|Северная Америка|"
        "Amerika Kaskazini|北美洲",
        "south_america": "أمريكا الجنوبية|Südamerika|South America|América del Sur|Южная Америка|Amerika Kusini|南美洲",
    }.items()
}

# key: (continent, country names). The continent also picks a capital item's distractors.
_COUNTRIES: dict[str, tuple[str, str]] = {
    "france": ("europe", "فرنسا|Frankreich|France|Francia|Франция|Ufaransa|法国"),
    "germany": ("europe", "ألمانيا|Deutschland|Germany|Alemania|Германия|Ujerumani|德国"),
    "spain": ("europe", "إسبانيا|Spanien|Spain|España|Испания|Hispania|西班牙"),
    "italy": ("europe", "إيطاليا|Italien|Italy|Italia|Италия|Italia|意大利"),
    "portugal": ("europe", "البرتغال|Portugal|Portugal|Portugal|Португалия|Ureno|葡萄牙"),
    "greece": ("europe", "اليونان|Griechenland|Greece|Grecia|Греция|Ugiriki|希腊"),
    "sweden": ("europe", "السويد|Schweden|Sweden|Suecia|Швеция|Uswidi|瑞典"),
    "norway": ("europe", "النرويج|Norwegen|Norway|Noruega|Норвегия|Norwei|挪威"),
    "austria": ("europe", "النمسا|Österreich|Austria|Austria|Австрия|Austria|奥地利"),
    "finland": ("europe", "فنلندا|Finnland|Finland|Finlandia|Финляндия|Ufini|芬兰"),
    "ireland": ("europe", "أيرلندا|Irland|Ireland|Irlanda|Ирландия|Ayalandi|爱尔兰"),
    "russia": ("europe", "روسيا|Russland|Russia|Rusia|Россия|Urusi|俄罗斯"),
    "japan": ("asia", "اليابان|Japan|Japan|Japón|Япония|Japani|日本"),
    "china": ("asia", "الصين|China|China|China|Китай|China|中国"),
    "india": ("asia", "الهند|Indien|India|India|Индия|India|印度"),
    "indonesia": ("asia", "إندونيسيا|Indonesien|Indonesia|Indonesia|Индонезия|Indonesia|印度尼西亚"),
    "iran": ("asia", "إيران|Iran|Iran|Irán|Иран|Iran|伊朗"),
    "iraq": ("asia", "العراق|Irak|Iraq|Irak|Ирак|Iraq|伊拉克"),
    "saudi_arabia": ("asia", "السعودية|Saudi-Arabien|Saudi Arabia|Arabia Saudita|Саудовская Аравия|Saudia|沙特阿拉伯"),
    "south_korea": ("asia", "كوريا الجنوبية|Südkorea|South Korea|Corea del Sur|Южная Корея|Korea Kusini|韩国"),
    "vietnam": ("asia", "فيتنام|Vietnam|Vietnam|Vietnam|Вьетнам|Vietnam|越南"),
    "pakistan": ("asia", "باكستان|Pakistan|Pakistan|Pakistán|Пакистан|Pakistan|巴基斯坦"),
    "egypt": ("africa", "مصر|Ägypten|Egypt|Egipto|Египет|Misri|埃及"),
    "kenya": ("africa", "كينيا|Kenia|Kenya|Kenia|Кения|Kenya|肯尼亚"),
    "nigeria": ("africa", "نيجيريا|Nigeria|Nigeria|Nigeria|Нигерия|Nigeria|尼日利亚"),
    "ghana": ("africa", "غانا|Ghana|Ghana|Ghana|Гана|Ghana|加纳"),
    "ethiopia": ("africa", "إثيوبيا|Äthiopien|Ethiopia|Etiopía|Эфиопия|Ethiopia|埃塞俄比亚"),
    "uganda": ("africa", "أوغندا|Uganda|Uganda|Uganda|Уганда|Uganda|乌干达"),
    "tanzania": ("africa", "تنزانيا|Tansania|Tanzania|Tanzania|Танзания|Tanzania|坦桑尼亚"),
    "morocco": ("africa", "المغرب|Marokko|Morocco|Marruecos|Марокко|Moroko|摩洛哥"),
    "senegal": ("africa", "السنغال|Senegal|Senegal|Senegal|Сенегал|Senegal|塞内加尔"),
    "canada": ("north_america", "كندا|Kanada|Canada|Canadá|Канада|Kanada|加拿大"),
    "mexico": ("north_america", "المكسيك|Mexiko|Mexico|México|Мексика|Meksiko|墨西哥"),
    "cuba": ("north_america", "كوبا|Kuba|Cuba|Cuba|Куба|Kuba|古巴"),
    "brazil": ("south_america", "البرازيل|Brasilien|Brazil|Brasil|Бразилия|Brazil|巴西"),
    "argentina": ("south_america", "الأرجنتين|Argentinien|Argentina|Argentina|Аргентина|Argentina|阿根廷"),
    "peru": ("south_america", "بيرو|Peru|Peru|Perú|Перу|Peru|秘鲁"),
    "chile": ("south_america", "تشيلي|Chile|Chile|Chile|Чили|Chile|智利"),
    "colombia": ("south_america", "كولومبيا|Kolumbien|Colombia|Colombia|Колумбия|Kolombia|哥伦比亚"),
    "australia": ("oceania", "أستراليا|Australien|Australia|Australia|Австралия|Australia|澳大利亚"),
}
COUNTRIES: dict[str, Term] = {key: term(row) for key, (_, row) in _COUNTRIES.items()}
CONTINENT_OF: dict[str, str] = {key: continent for key, (continent, _) in _COUNTRIES.items()}
# No continent item: Russia spans two continents; Oceania has one country here; Arabic asks for the
# continent of "the state X" (دولة X), awkward before the Kingdom's short name السعودية.
NO_CONTINENT_ITEM = frozenset({"russia", "australia", "saudi_arabia"})

CAPITALS: dict[str, Term] = {
    key: term(row)
    for key, row in {
        "france": "باريس|Paris|Paris|París|Париж|Paris|巴黎",
        "germany": "برلين|Berlin|Berlin|Berlín|Берлин|Berlin|柏林",
        "spain": "مدريد|Madrid|Madrid|Madrid|Мадрид|Madrid|马德里",
        "italy": "روما|Rom|Rome|Roma|Рим|Roma|罗马",
        "portugal": "لشبونة|Lissabon|Lisbon|Lisboa|Лиссабон|Lisbon|里斯本",
        "greece": "أثينا|Athen|Athens|Atenas|Афины|Athens|雅典",
        "sweden": "ستوكهولم|Stockholm|Stockholm|Estocolmo|Стокгольм|Stockholm|斯德哥尔摩",
        "norway": "أوسلو|Oslo|Oslo|Oslo|Осло|Oslo|奥斯陆",
        "austria": "فيينا|Wien|Vienna|Viena|Вена|Vienna|维也纳",
        "finland": "هلسنكي|Helsinki|Helsinki|Helsinki|Хельсинки|Helsinki|赫尔辛基",
        "ireland": "دبلن|Dublin|Dublin|Dublín|Дублин|Dublin|都柏林",
        "russia": "موسكو|Moskau|Moscow|Moscú|Москва|Moscow|莫斯科",
        "japan": "طوكيو|Tokio|Tokyo|Tokio|Токио|Tokyo|东京",
        "china": "بكين|Peking|Beijing|Pekín|Пекин|Beijing|北京",
        "india": "نيودلهي|Neu-Delhi|New Delhi|Nueva Delhi|Нью-Дели|New Delhi|新德里",
        "indonesia": "جاكرتا|Jakarta|Jakarta|Yakarta|Джакарта|Jakarta|雅加达",
        "iran": "طهران|Teheran|Tehran|Teherán|Тегеран|Tehran|德黑兰",
        "iraq": "بغداد|Bagdad|Baghdad|Bagdad|Багдад|Baghdad|巴格达",
        "saudi_arabia": "الرياض|Riad|Riyadh|Riad|Эр-Рияд|Riyadh|利雅得",
        "south_korea": "سيول|Seoul|Seoul|Seúl|Сеул|Seoul|首尔",
        "vietnam": "هانوي|Hanoi|Hanoi|Hanói|Ханой|Hanoi|河内",
        "pakistan": "إسلام آباد|Islamabad|Islamabad|Islamabad|Исламабад|Islamabad|伊斯兰堡",
        "egypt": "القاهرة|Kairo|Cairo|El Cairo|Каир|Kairo|开罗",
        "kenya": "نيروبي|Nairobi|Nairobi|Nairobi|Найроби|Nairobi|内罗毕",
        "nigeria": "أبوجا|Abuja|Abuja|Abuya|Абуджа|Abuja|阿布贾",
        "ghana": "أكرا|Accra|Accra|Acra|Аккра|Accra|阿克拉",
        "ethiopia": "أديس أبابا|Addis Abeba|Addis Ababa|Adís Abeba|Аддис-Абеба|Addis Ababa|亚的斯亚贝巴",
        "uganda": "كمبالا|Kampala|Kampala|Kampala|Кампала|Kampala|坎帕拉",
        "tanzania": "دودوما|Dodoma|Dodoma|Dodoma|Додома|Dodoma|多多马",
        "morocco": "الرباط|Rabat|Rabat|Rabat|Рабат|Rabat|拉巴特",
        "senegal": "داكار|Dakar|Dakar|Dakar|Дакар|Dakar|达喀尔",
        "canada": "أوتاوا|Ottawa|Ottawa|Ottawa|Оттава|Ottawa|渥太华",
        "cuba": "هافانا|Havanna|Havana|La Habana|Гавана|Havana|哈瓦那",
        "brazil": "برازيليا|Brasília|Brasília|Brasilia|Бразилиа|Brasilia|巴西利亚",
        "argentina": "بوينس آيرس|Buenos Aires|Buenos Aires|Buenos Aires|Буэнос-Айрес|Buenos Aires|布宜诺斯艾利斯",
        "peru": "ليما|Lima|Lima|Lima|Лима|Lima|利马",
        "chile": "سانتياغو|Santiago de Chile|Santiago|Santiago de Chile|Сантьяго|Santiago|圣地亚哥",
        "colombia": "بوغوتا|Bogotá|Bogotá|Bogotá|Богота|Bogota|波哥大",
        "australia": "كانبرا|Canberra|Canberra|Canberra|Канберра|Canberra|堪培拉",
    }.items()
}

# Russian asks "Какой город является столицей <genitive>?".
RU_GENITIVE: dict[str, str] = {
    "france": "Франции",
    "germany": "Германии",
    "spain": "Испании",
    "italy": "Италии",
    "portugal": "Португалии",
    "greece": "Греции",
    "sweden": "Швеции",
    "norway": "Норвегии",
    "austria": "Австрии",
    "finland": "Финляндии",
    "ireland": "Ирландии",
    "russia": "России",
    "japan": "Японии",
    "china": "Китая",
    "india": "Индии",
    "indonesia": "Индонезии",
    "iran": "Ирана",
    "iraq": "Ирака",
    "saudi_arabia": "Саудовской Аравии",
    "south_korea": "Южной Кореи",
    "vietnam": "Вьетнама",
    "pakistan": "Пакистана",
    "egypt": "Египта",
    "kenya": "Кении",
    "nigeria": "Нигерии",
    "ghana": "Ганы",
    "ethiopia": "Эфиопии",
    "uganda": "Уганды",
    "tanzania": "Танзании",
    "morocco": "Марокко",
    "senegal": "Сенегала",
    "canada": "Канады",
    "cuba": "Кубы",
    "brazil": "Бразилии",
    "argentina": "Аргентины",
    "peru": "Перу",
    "chile": "Чили",
    "colombia": "Колумбии",
    "australia": "Австралии",
}

# --- calendar (in order) -------------------------------------------------------------------------------

DAYS: list[Term] = [
    term(row)
    for row in (
        "الاثنين|Montag|Monday|lunes|понедельник|Jumatatu|星期一",
        "الثلاثاء|Dienstag|Tuesday|martes|вторник|Jumanne|星期二",
        "الأربعاء|Mittwoch|Wednesday|miércoles|среда|Jumatano|星期三",
        "الخميس|Donnerstag|Thursday|jueves|четверг|Alhamisi|星期四",
        "الجمعة|Freitag|Friday|viernes|пятница|Ijumaa|星期五",
        "السبت|Samstag|Saturday|sábado|суббота|Jumamosi|星期六",
        "الأحد|Sonntag|Sunday|domingo|воскресенье|Jumapili|星期日",
    )
]
DAY_KEYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

MONTHS: list[Term] = [
    term(row)
    for row in (
        "يناير|Januar|January|enero|январь|Januari|一月",
        "فبراير|Februar|February|febrero|февраль|Februari|二月",
        "مارس|März|March|marzo|март|Machi|三月",
        "أبريل|April|April|abril|апрель|Aprili|四月",
        "مايو|Mai|May|mayo|май|Mei|五月",
        "يونيو|Juni|June|junio|июнь|Juni|六月",
        "يوليو|Juli|July|julio|июль|Julai|七月",
        "أغسطس|August|August|agosto|август|Agosti|八月",
        "سبتمبر|September|September|septiembre|сентябрь|Septemba|九月",
        "أكتوبر|Oktober|October|octubre|октябрь|Oktoba|十月",
        "نوفمبر|November|November|noviembre|ноябрь|Novemba|十一月",
        "ديسمبر|Dezember|December|diciembre|декабрь|Desemba|十二月",
    )
]

# --- numbers -------------------------------------------------------------------------------------------

# NUMBER_WORDS[n] is n written out, for 1 <= n <= 10 (index 0 is unused).
NUMBER_WORDS: list[Term | None] = [
    None,
    *(
        term(row)
        for row in (
            "واحد|eins|one|uno|один|moja|一",
            "اثنان|zwei|two|dos|два|mbili|二",
            "ثلاثة|drei|three|tres|три|tatu|三",
            "أربعة|vier|four|cuatro|четыре|nne|四",
            "خمسة|fünf|five|cinco|пять|tano|五",
            "ستة|sechs|six|seis|шесть|sita|六",
            "سبعة|sieben|seven|siete|семь|saba|七",
            "ثمانية|acht|eight|ocho|восемь|nane|八",
            "تسعة|neun|nine|nueve|девять|tisa|九",
            "عشرة|zehn|ten|diez|десять|kumi|十",
        )
    ),
]
# The operation between two numbers written out ("three plus four").
OPERATION_WORDS: dict[str, Term] = {
    "+": term("زائد|plus|plus|más|плюс|jumlisha|加"),
    "-": term("ناقص|minus|minus|menos|минус|toa|减"),
    "*": term("مضروبًا في|mal|times|por|умножить на|mara|乘以"),
}
OPERATION_SYMBOLS = {"+": "+", "-": "-", "*": "×"}

# --- comparison scales (smallest first) ----------------------------------------------------------------

ANIMALS_BY_SIZE: list[Term] = [
    term(row)
    for row in (
        "نملة|Ameise|ant|hormiga|муравей|sisimizi|蚂蚁",
        "فأر|Maus|mouse|ratón|мышь|panya|老鼠",
        "قطة|Katze|cat|gato|кошка|paka|猫",
        "حصان|Pferd|horse|caballo|лошадь|farasi|马",
        "فيل|Elefant|elephant|elefante|слон|tembo|大象",
        "حوت|Wal|whale|ballena|кит|nyangumi|鲸鱼",
    )
]
PERIODS_BY_LENGTH: list[Term] = [
    term(row)
    for row in (
        "ثانية|Sekunde|second|segundo|секунда|sekunde|秒",
        "دقيقة|Minute|minute|minuto|минута|dakika|分钟",
        "ساعة|Stunde|hour|hora|час|saa|小时",
        "يوم|Tag|day|día|день|siku|天",
        "أسبوع|Woche|week|semana|неделя|wiki|星期",
        "سنة|Jahr|year|año|год|mwaka|年",
    )
]

# --- phrasings -----------------------------------------------------------------------------------------

# The prompt around every question; the choice follows the answer label (after a space, Chinese: none).
FRAMES: Term = term(
    "سؤال: {question}\nالجواب:|Frage: {question}\nAntwort:|Question: {question}\nAnswer:|"
    "Pregunta: {question}\nRespuesta:|Вопрос: {question}\nОтвет:|Swali: {question}\nJibu:|问题：{question}\n答案："
)
# The word before the last of listed options ("a, b, c or d"); Arabic repeats it between all of them.
OR: Term = term("أو|oder|or|o|или|au|和")

QUESTIONS: dict[str, Term] = {
    key: term(row)
    for key, row in {
        "capital": "ما هي عاصمة {country}؟|Was ist die Hauptstadt von {country}?|What is the capital of {country}?|"
        "¿Cuál es la capital de {country}?|Какой город является столицей {country}?|Mji mkuu wa {country} ni upi?|"
        "{country}的首都是哪个城市？",
        "continent": "في أي قارة تقع دولة {country}؟|Auf welchem Kontinent liegt {country}?|"
        "On which continent is {country}?|¿En qué continente está {country}?|На каком континенте находится {country}?|"
        "{country} iko katika bara gani?|{country}位于哪个大洲？",
        "arithmetic": "كم يساوي {expr}؟|Wie viel ist {expr}?|What is {expr}?|¿Cuánto es {expr}?|Сколько будет {expr}?|"
        "{expr} ni ngapi?|{expr}等于多少？",
        "day_after": "اليوم هو {day}. ما اليوم الذي يأتي بعده؟|Heute ist {day}. Welcher Tag ist morgen?|"
        "Today is {day}. What day is tomorrow?|Hoy es {day}. ¿Qué día es mañana?|"
        "Сегодня {day}. Какой день недели будет завтра?|Leo ni {day}. Kesho ni siku gani?|今天是{day}。明天是星期几？",
        "day_before": "اليوم هو {day}. ما اليوم الذي يأتي قبله؟|Heute ist {day}. Welcher Tag war gestern?|"
        "Today is {day}. What day was yesterday?|Hoy es {day}. ¿Qué día fue ayer?|"
        "Сегодня {day}. Какой день недели был вчера?|Leo ni {day}. Jana ilikuwa siku gani?|今天是{day}。昨天是星期几？",
        "month_after": "هذا الشهر هو {month}. ما الشهر الذي يأتي بعده؟|Wir haben {month}. Welcher Monat kommt danach?|"
        "It is {month} now. Which month comes next?|Estamos en {month}. ¿Qué mes viene después?|"
        "Сейчас {month}. Какой месяц будет следующим?|Mwezi huu ni {month}. Mwezi ujao ni upi?|"
        "现在是{month}。下个月是几月？",
        "month_before": "هذا الشهر هو {month}. ما الشهر الذي يأتي قبله؟|Wir haben {month}. Welcher Monat war davor?|"
        "It is {month} now. Which month came before it?|Estamos en {month}. ¿Qué mes fue el anterior?|"
        "Сейчас {month}. Какой месяц был перед ним?|Mwezi huu ni {month}. Mwezi uliopita ulikuwa upi?|"
        "现在是{month}。上个月是几月？",
        "animal_largest": "أي حيوان هو الأكبر حجمًا: {options}؟|Welches Tier ist am größten: {options}?|"
        "Which animal is the largest: {options}?|¿Qué animal es el más grande: {options}?|"
        "Какое животное самое большое: {options}?|Mnyama yupi ni mkubwa zaidi: {options}?|{options}中，哪种动物最大？",
        "animal_smallest": "أي حيوان هو الأصغر حجمًا: {options}؟|Welches Tier ist am kleinsten: {options}?|"
        "Which animal is the smallest: {options}?|¿Qué animal es el más pequeño: {options}?|"
        "Какое животное самое маленькое: {options}?|Mnyama yupi ni mdogo zaidi: {options}?|{options}中，哪种动物最小？",
        "period_longest": "أي مدة زمنية هي الأطول: {options}؟|Welche Zeitspanne ist am längsten: {options}?|"
        "Which period of time is the longest: {options}?|¿Qué periodo de tiempo es el más largo: {options}?|"
        "Какой промежуток времени самый длинный: {options}?|Kipindi kipi cha muda ni kirefu zaidi: {options}?|"
        "{options}中，哪个时间单位最长？",
        "period_shortest": "أي مدة زمنية هي الأقصر: {options}؟|Welche Zeitspanne ist am kürzesten: {options}?|"
        "Which period of time is the shortest: {options}?|¿Qué periodo de tiempo es el más corto: {options}?|"
        "Какой промежуток времени самый короткий: {options}?|Kipindi kipi cha muda ni kifupi zaidi: {options}?|"
        "{options}中，哪个时间单位最短？",
    }.items()
}
